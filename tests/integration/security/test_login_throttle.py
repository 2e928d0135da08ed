"""Login attempts are throttled: repeated wrong passwords lock the username for that address."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_repeated_wrong_passwords_lock_the_login_even_with_the_right_one(client, user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
        assert response.status_code in (200, 429)
    locked = client.post("/accounts/login/", {"username": "alice", "password": "alice-password-1"})
    assert locked.status_code == 429
    assert b"Too many failed login attempts" in locked.content


def test_a_correct_password_logs_in_and_resets_the_count(client, user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-password-1"})
    assert response.status_code == 302


def _login(client, password: str, forwarded_for: str | None = None, remote: str = "10.0.0.2"):
    extra = {"REMOTE_ADDR": remote}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client.post("/accounts/login/", {"username": "alice", "password": password}, **extra)


def test_behind_one_proxy_a_lockout_hits_only_the_attackers_address(client, user, settings):
    settings.MLOPEN_PROXY_COUNT = 1
    for _ in range(10):
        _login(client, "wrong", forwarded_for="1.2.3.4")
    assert _login(client, "alice-password-1", forwarded_for="1.2.3.4").status_code == 429
    client.logout()
    assert _login(client, "alice-password-1", forwarded_for="5.6.7.8").status_code == 302


def test_behind_a_proxy_a_client_cannot_choose_its_address_by_prepending_to_the_header(client, user, settings):
    settings.MLOPEN_PROXY_COUNT = 1
    # The proxy appends the real address (1.2.3.4) after whatever the client wrote.
    for n in range(10):
        _login(client, "wrong", forwarded_for=f"9.9.9.{n}, 1.2.3.4")
    assert _login(client, "alice-password-1", forwarded_for="1.2.3.4").status_code == 429


def test_without_a_proxy_the_forwarded_header_is_ignored(client, user, settings):
    settings.MLOPEN_PROXY_COUNT = 0
    for n in range(10):
        _login(client, "wrong", forwarded_for=f"9.9.9.{n}", remote="1.2.3.4")
    assert _login(client, "alice-password-1", forwarded_for="5.6.7.8", remote="1.2.3.4").status_code == 429
    assert _login(client, "alice-password-1", remote="5.6.7.8").status_code == 302


def test_with_named_proxies_another_peer_cannot_set_the_address(client, user, settings):
    settings.MLOPEN_PROXY_COUNT = 1
    settings.MLOPEN_TRUSTED_PROXIES = ["10.0.0.0/24"]
    for n in range(10):
        _login(client, "wrong", forwarded_for=f"9.9.9.{n}", remote="172.16.0.9")
    # All ten were counted against the peer itself, whatever the header said.
    assert _login(client, "alice-password-1", forwarded_for="5.6.7.8", remote="172.16.0.9").status_code == 429
    assert _login(client, "alice-password-1", forwarded_for="5.6.7.8", remote="10.0.0.2").status_code == 302
