"""Helpers for the engine tests (a plain module: test modules import it by name)."""

from __future__ import annotations

import time

import psutil
from django.db import connection


def poll(condition, timeout: float, interval: float = 0.05, message: str = "condition"):
    """Call ``condition`` until it returns something truthy; return that, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met within {timeout} s (last: {value!r})")
        time.sleep(interval)


def processes_with_marker(marker: str) -> list[psutil.Process]:
    """Live processes whose command line contains ``marker`` (a pipeline's grandchild, say)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(process.info["cmdline"] or []) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            pass
    return found


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def database_url() -> str:
    """DATABASE_URL for a worker of another "host" sharing this test session's database."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return (f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
            f"{db['NAME']}")
