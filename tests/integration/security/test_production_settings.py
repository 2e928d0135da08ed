"""MLOPEN_ENV=production: refuses to start without a secret key and allowed hosts, and passes
Django's deployment checklist (`check --deploy`) with warnings counted as failures."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

# Runs mlopen on the embedded default whatever DATABASE_URL says.
pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parents[3]


def mlopen(tmp_path: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPEN_", "DJANGO_", "DATABASE_URL"))}
    env.update(
        MLOPEN_HOME=str(tmp_path),
        MLOPEN_ENV="production",
        MLOPEN_LOAD_DEMO="false",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
        **env_vars,
    )
    return subprocess.run(
        [sys.executable, "-m", "mlopen.cli.main", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_check_deploy_passes_with_warnings_as_failures(tmp_path):
    done = mlopen(
        tmp_path,
        "manage",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        MLOPEN_ALLOWED_HOSTS="mlopen.example.org",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout


def test_the_secret_key_may_come_from_a_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(secrets.token_urlsafe(60) + "\n")
    done = mlopen(
        tmp_path,
        "manage",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY_FILE=str(key_file),
        MLOPEN_ALLOWED_HOSTS="mlopen.example.org",
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_production_without_a_secret_key_refuses_to_start(tmp_path):
    done = mlopen(tmp_path, "manage", "check", MLOPEN_ALLOWED_HOSTS="mlopen.example.org")
    assert done.returncode != 0
    assert "MLOPEN_ENV=production needs DJANGO_SECRET_KEY or DJANGO_SECRET_KEY_FILE" in done.stderr
    assert not (tmp_path / "secret_key").exists()  # no key was made up in its place


def test_production_without_allowed_hosts_refuses_to_start(tmp_path):
    done = mlopen(tmp_path, "manage", "check", DJANGO_SECRET_KEY=secrets.token_urlsafe(60))
    assert done.returncode != 0
    assert "MLOPEN_ENV=production needs MLOPEN_ALLOWED_HOSTS" in done.stderr


def test_a_weak_secret_key_fails_the_deployment_check(tmp_path):
    done = mlopen(
        tmp_path,
        "manage",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY="short",
        MLOPEN_ALLOWED_HOSTS="mlopen.example.org",
    )
    assert done.returncode != 0 and "security.W009" in done.stderr
