"""Helpers for the engine tests (a plain module: test modules import it by name)."""

from __future__ import annotations

import time

import psutil
from worker_support import database_url  # noqa: F401 - engine tests import it from here


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
