"""Django settings for a worker under fault injection: mlopen's own settings, plus a database that
answers every write with SQLite's "database or disk is full" while the file named by
MLOPEN_FAULT_DISK_FULL exists. Reads still work, as on a real full disk.

Used by tests/integration/engine/test_faults.py (a worker started with
DJANGO_SETTINGS_MODULE=fault_injection); nothing in mlopen refers to it.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.db import OperationalError
from django.db.backends.signals import connection_created

from mlopen.settings import *  # noqa: F403 - these are mlopen's settings, with one fault added

_DISK_FULL = Path(os.environ["MLOPEN_FAULT_DISK_FULL"])
_WRITES = ("INSERT", "UPDATE", "DELETE")


def _refuse_writes_while_the_disk_is_full(execute, sql, params, many, context):
    if _DISK_FULL.exists() and sql.lstrip().upper().startswith(_WRITES):
        raise OperationalError("database or disk is full")
    return execute(sql, params, many, context)


def _install(sender, connection, **kwargs) -> None:
    # Every connection of the process, from its first statement: the main thread's and the
    # heartbeat thread's, and each one made again after a retry closed a broken one.
    if _refuse_writes_while_the_disk_is_full not in connection.execute_wrappers:
        connection.execute_wrappers.append(_refuse_writes_while_the_disk_is_full)


connection_created.connect(_install)
