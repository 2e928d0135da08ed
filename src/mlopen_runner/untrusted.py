"""Reading what a pipeline process left in a folder it could write, without trusting any of it.

Anything in such a folder may be a symlink to a host file (the secret key, the database, another
user's result), a FIFO that blocks whoever opens it, a device, or a file still growing. So the
parent never opens a path there by name: it opens the folder once with O_NOFOLLOW, then each file
relative to that descriptor with O_NOFOLLOW | O_NONBLOCK, requires a regular file, and reads at
most a bounded number of bytes. It never chmods, copies or stats by name there either.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_COPY_CHUNK = 1024 * 1024


class UntrustedFileError(Exception):
    """The file is missing, not a regular file, or over its size limit; str() says which, in plain words."""


@contextlib.contextmanager
def open_folder(path: str) -> Iterator[int]:
    """A descriptor of the folder `path`; refuses a symlink in its place."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise UntrustedFileError(
            f"the folder {os.path.basename(path)!r} is not a plain folder ({exc.strerror})"
        ) from exc
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_file(folder_fd: int, name: str, max_bytes: int) -> Iterator[int]:
    """A descriptor of the regular file `name` in the folder, at most `max_bytes` long when opened."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=folder_fd)
    except FileNotFoundError as exc:
        raise UntrustedFileError(f"Pipeline process exited without writing {name}") from exc
    except OSError as exc:  # ELOOP: a symlink
        raise UntrustedFileError(f"{name} is not a regular file ({exc.strerror})") from exc
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise UntrustedFileError(f"{name} is not a regular file")
        check_size(name, status.st_size, max_bytes)
        os.set_blocking(fd, True)
        yield fd
    finally:
        os.close(fd)


def check_size(name: str, size: int, max_bytes: int) -> None:
    """UntrustedFileError when `name`, `size` bytes long, is over `max_bytes`."""
    if size > max_bytes:
        raise UntrustedFileError(f"{name} is {describe_size(size)}, over the {describe_size(max_bytes)} limit")


def exists(folder: str, name: str) -> bool:
    """Whether `name` is in the folder (as anything: this only decides whether to look closer)."""
    try:
        with open_folder(folder) as folder_fd:
            os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except (OSError, UntrustedFileError):
        return False
    return True


def read_bytes(folder: str, name: str, max_bytes: int) -> bytes:
    """The bytes of the regular file `name` in `folder`; UntrustedFileError if it is not one or is too big."""
    with open_folder(folder) as folder_fd, open_file(folder_fd, name, max_bytes) as fd:
        return _read_at_most(fd, name, max_bytes)


def copy_out(folder: str, name: str, destination: str, max_bytes: int) -> int:
    """Copy the regular file `name` in `folder` to `destination`, a new file the caller owns; its size.

    `destination` is created with O_EXCL (never through a link) in a folder the pipeline cannot write.
    """
    with open_folder(folder) as folder_fd, open_file(folder_fd, name, max_bytes) as source:
        target = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        copied = 0
        try:
            while chunk := os.read(source, _COPY_CHUNK):
                copied += len(chunk)
                if copied > max_bytes:  # it grew after it was measured
                    raise UntrustedFileError(f"{name} is over the {describe_size(max_bytes)} limit")
                os.write(target, chunk)
        except BaseException:
            os.close(target)
            os.unlink(destination)
            raise
        os.close(target)
        return copied


def _read_at_most(fd: int, name: str, max_bytes: int) -> bytes:
    chunks, total = [], 0
    while chunk := os.read(fd, min(_COPY_CHUNK, max_bytes + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise UntrustedFileError(f"{name} is over the {describe_size(max_bytes)} limit")
    return b"".join(chunks)


def disk_usage(path: str, max_entries: int) -> tuple[int, int]:
    """(bytes on disk, entries) under `path`, never following a link; stops counting past max_entries.

    Bytes are allocated blocks, so a sparse file counts what it really takes. os.fwalk walks by
    descriptor, so a folder swapped for a link mid-walk is not followed either.
    """
    total, entries = 0, 0
    for _root, folders, files, root_fd in os.fwalk(path, follow_symlinks=False):
        for name in (*folders, *files):
            entries += 1
            with contextlib.suppress(OSError):
                total += os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_blocks * 512
        if entries > max_entries:
            break
    return total, entries


def fresh_folder(path: str) -> None:
    """Make `path` a new empty folder of ours, whatever was there (a link is removed, not followed)."""
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.lexists(path):
        shutil.rmtree(path)  # removes by descriptor: a link inside is removed, never followed
    os.mkdir(path, 0o700)


def create_file(path: str, data: bytes) -> None:
    """Write a new file at `path`, replacing a file or link there without following it."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def describe_size(byte_count: int) -> str:
    mb = 1024 * 1024
    for unit, size in (("MB", mb), ("KB", 1024)):
        if byte_count >= size:
            return f"{byte_count / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{byte_count} bytes"
