"""Doorbells: one process sleeps until another, on the same host, says that something happened.

Used where the database cannot notify (SQLite has no LISTEN/NOTIFY): a request waiting for run
N binds a Unix datagram socket named ``N.<random>`` in a folder shared by every process of the
installation, and the worker that finishes run N sends a datagram to each socket whose name starts
with ``N.``. Nothing is written when nobody waits, the sender never blocks, and a socket left by
a process that died is removed by the next sender that finds it refusing.

A ring only wakes the sleeper: what it then does (read the run's row) must not trust it, since
anything that can reach the folder can ring. Socket paths are limited to 107 bytes, so both sides
reach the folder through ``/proc/self/fd/<fd of the folder>``, a short path at any depth.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from pathlib import Path


class Doorbell:
    """A socket in a folder that rings for one topic; a context manager that removes it."""

    def __init__(self, folder_fd: int, name: str, listener: socket.socket) -> None:
        self.folder_fd: int | None = folder_fd
        self.name = name
        self.socket: socket.socket | None = listener

    @classmethod
    def open(cls, folder: Path, topic: str) -> Doorbell:
        """A doorbell for ``topic`` in ``folder`` (created if need be); OSError when there can be none."""
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{topic}.{secrets.token_hex(6)}"
        folder_fd = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        listener = None
        try:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            listener.bind(_short_path(folder_fd, name))
        except OSError:
            if listener is not None:
                listener.close()
            os.close(folder_fd)
            raise
        return cls(folder_fd, name, listener)

    def __enter__(self) -> Doorbell:
        return self

    def wait(self, timeout: float) -> bool:
        """Sleep until a ring (True) or ``timeout`` seconds (False)."""
        assert self.socket is not None  # entered
        self.socket.settimeout(max(timeout, 0.0))
        try:
            self.socket.recv(64)
        except TimeoutError:
            return False
        return True

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        if self.folder_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.name, dir_fd=self.folder_fd)
            os.close(self.folder_fd)
            self.folder_fd = None


def ring(folder: Path, topic: str) -> int:
    """Ring every doorbell of ``topic`` in ``folder``; how many rang. Never blocks or raises on a
    missing folder or a dead listener."""
    prefix = f"{topic}."
    try:
        names = [name for name in os.listdir(folder) if name.startswith(prefix)]
    except OSError:
        return 0  # nobody has waited here yet
    if not names:
        return 0
    rang = 0
    folder_fd = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.setblocking(False)
            for name in names:
                try:
                    sender.sendto(topic.encode(), _short_path(folder_fd, name))
                    rang += 1
                except ConnectionRefusedError:  # its process is gone: nobody will remove it but us
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=folder_fd)
                except OSError:  # a full queue means it was rung already; gone meanwhile is fine too
                    pass
    finally:
        os.close(folder_fd)
    return rang


def _short_path(folder_fd: int, name: str) -> str:
    return f"/proc/self/fd/{folder_fd}/{name}"
