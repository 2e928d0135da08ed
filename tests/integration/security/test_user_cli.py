"""`mlopen user create|token|role`, run as the administrator runs them: subprocesses against a
fresh MLOPEN_HOME, read back from its SQLite database."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

# Runs mlopen on the embedded default whatever DATABASE_URL says.
pytestmark = [pytest.mark.embedded, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("mlopen-cli-home")
    completed = mlopen(path, "manage", "migrate", "-v", "0")
    assert completed.returncode == 0, completed.stderr
    return path


def mlopen(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPEN_", "DJANGO_", "DATABASE_URL"))}
    env.update(
        MLOPEN_HOME=str(home),
        MLOPEN_LOAD_DEMO="false",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    )
    return subprocess.run(
        [sys.executable, "-m", "mlopen.cli.main", *args],
        check=False,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def query(home: Path, sql: str, *params):
    with sqlite3.connect(home / "db.sqlite3") as db:
        return db.execute(sql, params).fetchall()


def role_groups(home: Path, name: str) -> list[str]:
    rows = query(
        home,
        "SELECT g.name FROM auth_group g JOIN auth_user_groups ug ON ug.group_id = g.id "
        "JOIN auth_user u ON u.id = ug.user_id WHERE u.username = ?",
        name,
    )
    return [row[0] for row in rows]


def flags(home: Path, name: str) -> tuple[int, int]:
    return query(home, "SELECT is_superuser, is_staff FROM auth_user WHERE username = ?", name)[0]


def test_create_three_users_with_their_roles_emails_and_passwords(home):
    for name, role in (("root", "admin"), ("ada", "author"), ("bob", "user")):
        done = mlopen(
            home,
            "user",
            "create",
            name,
            "--role",
            role,
            "--email",
            f"{name}@example.org",
            "--password-stdin",
            stdin=f"{name}-password-1\n",
        )
        assert (done.returncode, done.stdout.strip()) == (0, f"created {role} {name}"), done.stderr
        assert role_groups(home, name) == [role]
        (encoded,) = query(home, "SELECT password FROM auth_user WHERE username = ?", name)[0]
        assert PBKDF2PasswordHasher().verify(f"{name}-password-1", encoded)
    assert query(home, "SELECT email FROM auth_user WHERE username = 'ada'") == [("ada@example.org",)]
    assert flags(home, "root") == (1, 1) and flags(home, "ada") == (0, 0) and flags(home, "bob") == (0, 0)
    author_permissions = query(
        home,
        "SELECT p.codename FROM auth_permission p JOIN auth_group_permissions gp "
        "ON gp.permission_id = p.id JOIN auth_group g ON g.id = gp.group_id "
        "WHERE g.name = 'author' ORDER BY p.codename",
    )
    assert [row[0] for row in author_permissions] == ["add_pipeline", "add_pipelineversion", "change_pipeline"]


def test_token_prints_a_new_token_each_time_stored_only_as_its_digest(home):
    mlopen(home, "user", "create", "tok", stdin="")
    first, second = mlopen(home, "user", "token", "tok"), mlopen(home, "user", "token", "tok", "--token-name", "ci")
    assert first.returncode == 0 and first.stdout.startswith("mlo_") and len(first.stdout.strip()) == 44
    assert first.stdout != second.stdout
    rows = query(
        home,
        "SELECT t.name, t.digest FROM core_apitoken t JOIN auth_user u ON u.id = t.user_id "
        "WHERE u.username = 'tok' ORDER BY t.id",
    )
    digests = [hashlib.sha256(done.stdout.strip().encode()).hexdigest() for done in (first, second)]
    assert rows == [("created by mlopen user token", digests[0]), ("ci", digests[1])]


@pytest.mark.parametrize("lookalike", ["Looky", "LOOKY", "ｌｏｏｋｙ", "lооky"])  # the last with Cyrillic о
def test_create_refuses_a_lookalike_of_an_existing_name_without_a_traceback(home, lookalike):
    mlopen(home, "user", "create", "looky", stdin="")
    done = mlopen(home, "user", "create", lookalike, stdin="")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    name = unicodedata.normalize("NFKC", lookalike)
    assert done.stderr.strip() in (
        "mlopen user: The username 'looky' is taken.",
        f"mlopen user: The username {name!r} looks too much like the existing user 'looky'.",
    )
    assert query(home, "SELECT COUNT(*) FROM auth_user WHERE lower(username) = 'looky'") == [(1,)]


def test_role_moves_a_user_between_roles(home):
    mlopen(home, "user", "create", "mover", "--role", "admin", stdin="")
    done = mlopen(home, "user", "role", "mover", "user")
    assert (done.returncode, done.stdout.strip()) == (0, "mover is now user")
    assert role_groups(home, "mover") == ["user"] and flags(home, "mover") == (0, 0)
    mlopen(home, "user", "role", "mover", "author")
    assert role_groups(home, "mover") == ["author"]


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (("create", "dup"), "", None),  # made first, then again below
        (("token", "nobody"), None, "mlopen user: no user named 'nobody'"),
        (("role", "nobody", "admin"), None, "mlopen user: no user named 'nobody'"),
        (
            ("create", "weak", "--password-stdin"),
            "short\n",
            "mlopen user: This password is too short. It must contain at least 8 characters.",
        ),
        (
            ("create", "empty", "--password-stdin"),
            "",
            "mlopen user: --password-stdin was given but standard input held no password",
        ),
    ],
)
def test_refusals_exit_1_with_one_line_and_change_nothing(home, args, stdin, message):
    if message is None:
        mlopen(home, "user", *args, stdin=stdin)
        message = "mlopen user: The username 'dup' is taken."
    done = mlopen(home, "user", *args, stdin=stdin)
    assert (done.returncode, done.stderr.strip()) == (1, message)
    assert query(home, "SELECT count(*) FROM auth_user WHERE username IN ('weak', 'empty', 'nobody')") == [(0,)]


def test_an_unknown_role_is_a_usage_error(home):
    done = mlopen(home, "user", "create", "x", "--role", "root")
    assert done.returncode == 2 and "invalid choice: 'root'" in done.stderr
