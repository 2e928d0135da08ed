"""SQLite writers queue on a lock file instead of sleeping (mlopen.core.sqlite): the lock is held
exactly while a write transaction is open, and let go however it ends."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from django.db import connection, connections, transaction

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's writers only"),
]


def _lock_is_free() -> bool:
    """Whether another holder could take the writers' lock now (asked on a descriptor of its own)."""
    lock = str(Path(connection.settings_dict["NAME"]).resolve()) + "-writer.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def _fresh_probe_table() -> None:
    """A table of our own, empty: the test database's flush between tests does not know it."""
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS lock_probe")
        cursor.execute("CREATE TABLE lock_probe (n INTEGER)")


def test_the_engine_is_mlopens():
    assert connection.settings_dict["ENGINE"] == "mlopen.core.sqlite"


def test_a_write_transaction_holds_the_lock_until_it_commits():
    assert _lock_is_free()
    with transaction.atomic():
        connection.cursor().execute("SELECT 1")
        assert not _lock_is_free()
    assert _lock_is_free()


def test_a_transaction_that_fails_lets_the_lock_go():
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        assert not _lock_is_free()
        _ = 1 / 0
    assert _lock_is_free()


def test_a_savepoint_inside_a_transaction_takes_nothing_more():
    with transaction.atomic():
        with transaction.atomic():
            assert not _lock_is_free()
        assert not _lock_is_free()  # still inside the outer transaction
    assert _lock_is_free()


def test_a_closed_connection_lets_the_lock_go():
    transaction.atomic().__enter__()  # left open on purpose, as a process that stops mid-transaction
    assert not _lock_is_free()
    connection.close()  # Django rolls back what is open; the lock's descriptor is closed with it
    assert _lock_is_free()
    connection.connect()


def test_a_second_writer_waits_for_the_first_and_then_writes():
    _fresh_probe_table()
    order: list[str] = []
    started = threading.Event()

    def second_writer():
        started.set()
        with transaction.atomic():  # another thread: another connection, queued on the lock
            connection.cursor().execute("INSERT INTO lock_probe VALUES (2)")
            order.append("second")
        connections.close_all()

    with transaction.atomic():
        connection.cursor().execute("INSERT INTO lock_probe VALUES (1)")
        writer = threading.Thread(target=second_writer)
        writer.start()
        started.wait(30)
        order.append("first")
    writer.join(30)

    assert order == ["first", "second"]
    rows = connection.cursor().execute("SELECT n FROM lock_probe ORDER BY rowid").fetchall()
    assert rows == [(1,), (2,)]


def test_a_writer_that_is_not_mlopen_still_gets_its_turn():
    """The sqlite3 shell takes no lock file: mlopen's writer meets SQLite's own lock (and busy
    timeout) behind it, as before, and the outsider's write is never lost."""
    _fresh_probe_table()
    outsider = sqlite3.connect(str(connection.settings_dict["NAME"]), timeout=30, isolation_level=None)
    written: list[str] = []

    def mlopen_writer():
        with transaction.atomic():  # the lock file is free: SQLite's own lock is what it waits on
            connection.cursor().execute("INSERT INTO lock_probe VALUES (8)")
        written.append("mlopen")
        connections.close_all()

    try:
        outsider.execute("BEGIN IMMEDIATE")
        outsider.execute("INSERT INTO lock_probe VALUES (7)")
        writer = threading.Thread(target=mlopen_writer)
        writer.start()
        writer.join(0.3)
        assert written == []  # still waiting behind the outsider's transaction
        outsider.execute("COMMIT")
        writer.join(30)
    finally:
        outsider.close()

    assert written == ["mlopen"]
    rows = connection.cursor().execute("SELECT n FROM lock_probe ORDER BY rowid").fetchall()
    assert rows == [(7,), (8,)]


def test_a_sqlite_database_url_gets_the_same_engine(tmp_path):
    """Workers and `mlopen serve` on another MLOPEN_HOME name the database by URL: they queue too."""
    import subprocess
    import sys

    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/other.sqlite3",
        "MLOPEN_HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "mlopen.settings",
    }
    shown = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == "mlopen.core.sqlite"


def test_the_wal_file_is_cut_back_after_a_large_write():
    """Results up to MLOPEN_RESULT_IN_DATABASE_KB go through the WAL: a burst of them must not leave
    the file at its largest size for good. Past 64 MB it is cut back once a checkpoint restarts it."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_size_limit")
        limit = cursor.fetchone()[0]
    assert limit == 64 * 1024 * 1024
    _fresh_probe_table()
    wal = Path(str(Path(connection.settings_dict["NAME"]).resolve()) + "-wal")
    block = os.urandom(1024 * 1024)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS wal_probe (data BLOB)")
        for _ in range(72):
            cursor.execute("INSERT INTO wal_probe VALUES (%s)", [block])
    grown = wal.stat().st_size
    assert grown > limit
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE wal_probe")
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
    with transaction.atomic(), connection.cursor() as cursor:  # the next write restarts the WAL
        cursor.execute("INSERT INTO lock_probe VALUES (1)")
    assert wal.stat().st_size <= limit < grown
