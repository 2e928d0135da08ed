"""The box `mlopen serve` prints last at start: the address, and the admin made at this start."""

from mlopen.cli.serve import welcome_box


def test_box_shows_the_address_user_and_generated_password_framed():
    box = welcome_box("127.0.0.1", 8000, 1, ("admin", "s3cret-pass"), ready=True).strip().splitlines()
    assert box[0] == box[-1] and set(box[0]) == {"+", "-"}
    assert all(len(line) == len(box[0]) and line.startswith("| ") and line.endswith(" |") for line in box[1:-1])
    text = "\n".join(box)
    assert "mlopen is running: http://127.0.0.1:8000/" in text
    assert "user:      admin" in text and "password:  s3cret-pass" in text
    assert "1 worker(s) ready" in text


def test_wildcard_bind_is_shown_as_localhost_and_no_password_when_chosen_or_existing():
    chosen = welcome_box("0.0.0.0", 9000, 2, ("boss", ""), ready=False)
    assert "http://localhost:9000/" in chosen and "(password: MLOPEN_ADMIN_PASSWORD)" in chosen
    assert "2 worker(s) still starting" in chosen
    existing = welcome_box("127.0.0.1", 8000, 1, None, ready=True)
    assert "password" not in existing and "sign in with your account" in existing
