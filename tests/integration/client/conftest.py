"""Fixtures for the client tests: a live server, a token, and the `mlopen` command run in-process."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def isolated_config(tmp_path, monkeypatch):
    """Never read or write the developer's own ~/.config/mlopen, nor their MLOPEN_* variables."""
    monkeypatch.setenv("MLOPEN_CONFIG", str(tmp_path / "config" / "mlopen.json"))
    for name in ("MLOPEN_URL", "MLOPEN_TOKEN", "MLOPEN_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "config" / "mlopen.json"


@pytest.fixture
def token(author):
    from mlopen.core.tokens import create_token

    return create_token(author, "client tests")[1]


@pytest.fixture
def server(live_server, token, monkeypatch):
    """MLOPEN_URL and MLOPEN_TOKEN point at the live test server, as an author's token."""
    monkeypatch.setenv("MLOPEN_URL", live_server.url)
    monkeypatch.setenv("MLOPEN_TOKEN", token)
    return live_server.url


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self):
        import json

        return json.loads(self.out)


@pytest.fixture
def mlopen(capsys):
    """Run `mlopen ARGS...` in this process; return its exit code, stdout and stderr."""
    from mlopen.client.cli import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
