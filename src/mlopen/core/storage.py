"""Stored files: pipelines, datasets, trained models and results all live in Django's storage.

Names are always built by mlopen (never taken from a request), and every file is written to a
temporary name first and moved into place, so a failed upload never leaves half a file behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from django.core.files.storage import default_storage

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(raw: str, fallback: str = "file") -> str:
    """A name that can only ever mean a file inside its own folder.

    Drops directories (both / and \\), NUL and control characters, leading dots, and anything
    outside a conservative character set. "../../x.py" becomes "x.py".
    """
    name = unicodedata.normalize("NFKC", raw or "").replace("\x00", "")
    name = re.split(r"[\\/]", name)[-1]
    name = _UNSAFE.sub("_", name).strip("._ ")
    if not name or name in {".", ".."}:
        return fallback
    return name[:150]


def local_path(storage_name: str) -> Path:
    """The filesystem path of a stored file (FileSystemStorage and shared volumes)."""
    return Path(default_storage.path(storage_name))


def _ensure_inside(path: Path) -> Path:
    root = Path(default_storage.location).resolve()
    resolved = path.resolve()
    if root != resolved and root not in resolved.parents:
        raise ValueError(f"refusing to write outside storage: {path}")
    return resolved


class StagedFile:
    """A file written under a temporary name beside its final place; ``commit`` moves it there.

    Lets a caller decide on what was actually received (a quota, the file's kind) before the
    file appears under its name, without reading it twice.
    """

    def __init__(self, target: Path, temporary: Path, size: int, sha256: str):
        self.target = target
        self.path = temporary
        self.size = size
        self.sha256 = sha256

    def commit(self) -> None:
        os.replace(self.path, self.target)
        self.path = self.target

    def discard(self) -> None:
        if self.path != self.target:
            self.path.unlink(missing_ok=True)


def stage_stream(storage_name: str, chunks: Iterable[bytes]) -> StagedFile:
    """Write chunks to a temporary file beside storage_name; nothing is at storage_name yet."""
    target = _ensure_inside(local_path(storage_name))
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        os.chmod(tmp, 0o640)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return StagedFile(target, Path(tmp), size, digest.hexdigest())


def write_stream(storage_name: str, chunks: Iterable[bytes]) -> tuple[int, str]:
    """Write chunks to storage_name atomically; return (size, sha256)."""
    staged = stage_stream(storage_name, chunks)
    try:
        staged.commit()
    except BaseException:
        staged.discard()
        raise
    return staged.size, staged.sha256


def write_uploaded(storage_name: str, uploaded) -> tuple[int, str]:
    """Store a Django UploadedFile without reading it whole into memory."""
    return write_stream(storage_name, uploaded.chunks())


def copy_file_in(storage_name: str, source: Path) -> tuple[int, str]:
    with open(source, "rb") as handle:
        return write_stream(storage_name, iter(lambda: handle.read(1024 * 1024), b""))


def exists(storage_name: str) -> bool:
    return default_storage.exists(storage_name)


def open_stored(storage_name: str, mode: str = "rb") -> IO:
    return default_storage.open(storage_name, mode)


def delete_tree(storage_folder: str) -> None:
    path = _ensure_inside(local_path(storage_folder))
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def delete_file(storage_name: str) -> None:
    if storage_name and default_storage.exists(storage_name):
        default_storage.delete(storage_name)
