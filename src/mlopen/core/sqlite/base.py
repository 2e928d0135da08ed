"""Django's SQLite backend, with writers that queue instead of sleeping.

SQLite lets one transaction write at a time. A second writer's BEGIN IMMEDIATE finds the database
locked and sqlite3's busy handler sleeps and tries again, 1, 2, 5, 10, 15, 20, 25... ms apart: a
lock held for 2 ms can cost the next writer 10. With a web server and two workers each writing
two or three short transactions per run, those sleeps made a second worker slower than one.

Here every write transaction of every mlopen process first takes an exclusive ``flock`` on a file
beside the database, which the kernel hands to the next waiter the moment it is released. Then
BEGIN IMMEDIATE finds the database free (a process that is not mlopen's, such as the sqlite3 shell,
still meets the busy timeout as before). A crashed process's lock goes with it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._writer_fd: int | None = None
        self._writing = False

    def _writer_lock(self) -> int | None:
        name = str(self.settings_dict.get("NAME") or "")
        if self._writer_fd is None and name and not self.is_in_memory_db():
            # Resolved: processes that name one database file differently must share one lock.
            self._writer_fd = os.open(
                str(Path(name).resolve()) + "-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        return self._writer_fd

    def _start_transaction_under_autocommit(self) -> None:
        fd = self._writer_lock()
        if fd is not None and not self._writing:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._writing = True
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._end_writing()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._end_writing()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._end_writing()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._end_writing()
            if self._writer_fd is not None:
                os.close(self._writer_fd)
                self._writer_fd = None

    def _end_writing(self) -> None:
        if self._writing and self._writer_fd is not None:
            fcntl.flock(self._writer_fd, fcntl.LOCK_UN)
        self._writing = False
