"""The `mlopen` client commands against a live server, without a worker: credentials, errors,
uploads, listings, and --json printing exactly what the API answers.
"""

from __future__ import annotations

import io
import json
import os
import socket
import stat
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

PIPELINES = Path(__file__).resolve().parents[2] / "fixtures" / "pipelines"


def _api(url: str, token: str, path: str):
    return httpx.get(f"{url}/api/v1/{path}", headers={"Authorization": f"Token {token}"}).json()


def _one_line_error(result, starts: str) -> None:
    assert result.out == ""
    assert result.err.count("\n") == 1, result.err
    assert result.err.startswith(f"error: {starts}"), result.err
    assert "Traceback" not in result.err


# --- credentials and errors -----------------------------------------------------------------------


def test_bad_token_is_one_line_error_and_exit_1(server, mlopen):
    result = mlopen("runs", "list", "--token", "not-a-token")
    assert result.code == 1
    _one_line_error(result, "Invalid token. The server did not accept the token; check MLOPEN_TOKEN")


def test_unreachable_server_is_one_line_error(mlopen, monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = mlopen("pipeline", "list", "--url", f"http://127.0.0.1:{port}", "--token", "x")
    assert result.code == 1
    _one_line_error(result, f"cannot reach http://127.0.0.1:{port}: ")


def test_no_server_configured_says_how_to_configure_one(mlopen):
    result = mlopen("runs", "list")
    assert result.code == 1
    _one_line_error(result, "no server: pass --url, set MLOPEN_URL, or run `mlopen login --url URL`")


def test_a_url_that_is_not_mlopen_says_so(live_server, mlopen):
    result = mlopen("runs", "list", "--url", f"{live_server.url}/accounts", "--token", "x")
    assert result.code == 1
    assert "error: " in result.err and "Traceback" not in result.err


def test_unknown_run_is_a_404_line(server, mlopen):
    result = mlopen("runs", "show", "987654")
    assert result.code == 1
    _one_line_error(result, "There is no run 987654, or you cannot see it. (HTTP 404)")


def test_bad_param_syntax_is_a_usage_error(server, mlopen):
    result = mlopen("run", "anything", "--param", "k")
    assert result.code == 2
    _one_line_error(result, "--param 'k': write NAME=VALUE")


def test_unknown_command_is_a_usage_error(mlopen):
    result = mlopen("pipelines", "list")
    assert result.code == 2
    assert "invalid choice: 'pipelines'" in result.err


def test_login_saves_a_0600_profile_that_later_commands_use(live_server, token, mlopen, isolated_config):
    result = mlopen("login", "--url", live_server.url + "/", "--token", token)
    assert result.code == 0, result.err
    assert result.out.startswith(f"Logged in to {live_server.url} as ada (author)")
    assert stat.S_IMODE(os.stat(isolated_config).st_mode) == 0o600
    assert json.loads(isolated_config.read_text()) == {
        "profiles": {"default": {"url": live_server.url, "token": token}},
        "default": "default",
    }
    whoami = mlopen("whoami", "--json")
    assert whoami.code == 0
    assert whoami.json["username"] == "ada"
    assert mlopen("logout").code == 0
    assert mlopen("whoami").code == 1


def test_login_refuses_a_bad_token_and_saves_nothing(live_server, mlopen, isolated_config):
    result = mlopen("login", "--url", live_server.url, "--token", "wrong")
    assert result.code == 1
    assert "Invalid token" in result.err
    assert not isolated_config.exists()


def test_login_with_a_password_saves_a_new_token_made_for_this_machine(
    live_server, author, mlopen, monkeypatch, isolated_config
):
    monkeypatch.setattr("sys.stdin", io.StringIO("ada-password-1\n"))
    result = mlopen("login", "--url", live_server.url, "--username", "ada", "--expires-in-days", "30")
    assert result.code == 0, result.err
    saved = json.loads(isolated_config.read_text())["profiles"]["default"]["token"]
    assert saved.startswith("mlo_")
    from mlopen.core.models import ApiToken

    (made,) = ApiToken.objects.filter(user=author)
    assert made.name.startswith("mlopen login on ") and made.expires_at is not None
    assert mlopen("whoami", "--json").json["username"] == "ada"


def test_login_with_a_wrong_password_saves_nothing(live_server, author, mlopen, monkeypatch, isolated_config):
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong\n"))
    result = mlopen("login", "--url", live_server.url, "--username", "ada")
    assert result.code == 1
    assert "Invalid username/password" in result.err
    assert not isolated_config.exists()


def test_token_rotate_replaces_the_profiles_token_and_the_old_one_stops_working(
    live_server, token, mlopen, isolated_config
):
    assert mlopen("login", "--url", live_server.url, "--token", token).code == 0
    result = mlopen("token", "rotate")
    assert result.code == 0, result.err
    new = json.loads(isolated_config.read_text())["profiles"]["default"]["token"]
    assert new != token and new.startswith("mlo_")
    assert mlopen("whoami", "--json").json["username"] == "ada"
    assert mlopen("whoami", "--token", token).code == 1
    listed = mlopen("token", "list", "--json").json
    assert [(t["name"], t["state"], t["current"]) for t in listed] == [
        ("client tests", "active", True),
        ("client tests", "revoked", False),
    ]


def test_environment_overrides_the_profile(live_server, token, mlopen, monkeypatch):
    assert mlopen("login", "--url", live_server.url, "--token", token).code == 0
    monkeypatch.setenv("MLOPEN_TOKEN", "from-environment")
    assert "Invalid token" in mlopen("whoami").err


# --- pipelines and datasets ------------------------------------------------------------------------


def test_pipeline_upload_list_show(server, token, mlopen, tmp_path):
    upload = mlopen("pipeline", "upload", PIPELINES / "client_count.py", "--name", "counter", "--json")
    assert upload.code == 0, upload.err
    assert upload.json == _api(server, token, f"pipelines/{upload.json['id']}/")
    assert upload.json["params"]["run"]["k"] == {"type": "integer", "default": 3}

    changed = tmp_path / "client_count.py"  # an identical upload makes no new version
    changed.write_text((PIPELINES / "client_count.py").read_text() + "\n# version 2\n")
    human = mlopen("pipeline", "upload", changed, "--name", "counter")
    assert human.code == 0
    assert human.out.startswith(f"Uploaded counter v2 (pipeline {upload.json['id']})")

    listing = mlopen("pipeline", "list")
    assert listing.code == 0
    assert "counter" in listing.out and "NAME" in listing.out
    assert mlopen("pipeline", "list", "--json").json == _api(server, token, "pipelines/")

    for ref in ("counter", str(upload.json["id"])):
        shown = mlopen("pipeline", "show", ref, "--json")
        assert shown.code == 0
        assert [v["number"] for v in shown.json["versions"]] == [2, 1]
    assert "run parameters" in mlopen("pipeline", "show", "counter").out
    missing = mlopen("pipeline", "show", "no-such-pipeline")
    assert missing.code == 1
    _one_line_error(missing, "There is no pipeline 'no-such-pipeline'.")


def test_pipeline_upload_sends_a_support_folder_with_its_layout(server, token, mlopen, tmp_path):
    control = tmp_path / "textnet_control.py"
    control.write_text(
        "from textnet.model import WORDS\n"
        "def train(inpt, params=None):\n    pass\n"
        "def run_pipeline(input, model, args, params=None):\n    return {'text': WORDS}\n"
    )
    (tmp_path / "textnet" / "__pycache__").mkdir(parents=True)
    (tmp_path / "textnet" / "__init__.py").write_text("")
    (tmp_path / "textnet" / "model.py").write_text("WORDS = 'good bad'\n")
    (tmp_path / "textnet" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "textnet" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "vocab.txt").write_text("good\n")

    upload = mlopen("pipeline", "upload", control, tmp_path / "textnet", tmp_path / "vocab.txt", "--json")

    assert upload.code == 0, upload.err
    version = _api(server, token, f"pipelines/{upload.json['id']}/")["versions"][0]["number"]
    files = _api(server, token, f"pipelines/{upload.json['id']}/versions/{version}/files/")
    paths = sorted(entry["path"] for entry in files["files"])
    assert paths == ["textnet/__init__.py", "textnet/model.py", "textnet_control.py", "vocab.txt"]


def test_pipeline_upload_refused_prints_why(server, mlopen, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def train(:\n")
    result = mlopen("pipeline", "upload", broken)
    assert result.code == 1
    assert result.err.splitlines()[-1].startswith("error: Syntax error in broken.py at line 1")


def test_dataset_upload_list_show_download_delete(server, token, mlopen, tmp_path):
    data = tmp_path / "scores.csv"
    data.write_bytes(b"name,value\nA,1\nB,5\n")
    upload = mlopen("dataset", "upload", data, "--name", "scores", "--json")
    assert upload.code == 0, upload.err
    dataset_id = upload.json["id"]
    assert upload.json == _api(server, token, f"datasets/{dataset_id}/")
    assert f"Uploaded scores.csv (19 B) as dataset {dataset_id}." in upload.err
    assert mlopen("dataset", "list", "--json").json == _api(server, token, "datasets/")
    assert "scores.csv" in mlopen("dataset", "list").out
    shown = mlopen("dataset", "show", dataset_id)
    assert "first rows" in shown.out and "B" in shown.out
    target = tmp_path / "copy.csv"
    assert mlopen("dataset", "download", dataset_id, "-o", target).code == 0
    assert target.read_bytes() == data.read_bytes()
    assert mlopen("dataset", "delete", dataset_id).out == f"Deleted dataset {dataset_id}.\n"
    assert mlopen("dataset", "show", dataset_id).code == 1


def test_dataset_upload_of_a_missing_file(server, mlopen):
    result = mlopen("dataset", "upload", "/no/such/file.csv")
    assert result.code == 1
    _one_line_error(result, "/no/such/file.csv: no such file")


def test_run_without_wait_prints_the_queued_run(server, token, mlopen, tmp_path):
    assert mlopen("pipeline", "upload", PIPELINES / "client_count.py").code == 0
    data = tmp_path / "in.csv"
    data.write_text("name,value\nA,1\n")
    queued = mlopen("run", "client_count", "--input", data, "--param", "k=7", "--json")
    assert queued.code == 0, queued.err
    assert queued.json["status"] == "queued"
    assert queued.json["params"] == {"k": 7, "label": "rows"}  # "7" converted by the server
    listed = mlopen("runs", "list", "--pipeline", "client_count", "--status", "queued", "--json")
    assert [r["id"] for r in listed.json["results"]] == [queued.json["id"]]
    bad = mlopen("run", "client_count", "--param", "k=many")
    assert bad.code == 1
    _one_line_error(bad, "Some parameters are not valid. params.k: Enter a whole number (got 'many'). (HTTP 400)")
    cancelled = mlopen("runs", "cancel", queued.json["id"])
    assert cancelled.out == f"Cancelled run {queued.json['id']}.\n"
    again = mlopen("runs", "cancel", queued.json["id"])
    assert again.code == 1
    assert "only queued or running runs can be cancelled. (HTTP 409)" in again.err


def test_run_past_the_queued_limit_prints_the_limit_and_when_to_retry(server, mlopen, author, settings):
    from mlopen.runs.models import Run, RunLimits

    RunLimits.objects.create(user=author, max_queued=1)
    assert mlopen("pipeline", "upload", PIPELINES / "client_count.py").code == 0
    assert mlopen("run", "client_count", "--json").code == 0
    refused = mlopen("run", "client_count")
    assert refused.code == 1
    _one_line_error(refused, "You have 1 run waiting, the most you may have queued at once (1, MLOPEN_USER_MAX_QUEUED")
    assert "try again once some of them have started (in about 60 s)" in refused.err
    assert refused.err.rstrip().endswith("(HTTP 429)")
    assert Run.objects.filter(owner=author, status="queued").count() == 1
