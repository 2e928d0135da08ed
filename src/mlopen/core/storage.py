"""Stored files: pipelines, datasets, trained models and results all live in Django's storage.

Names are always built by mlopen (never taken from a request), and every file is written to a
temporary name first and moved into place, so a failed upload never leaves half a file behind.

Two backends: a folder (FileSystemStorage on MLOPEN_STORAGE_DIR, shared between hosts as a
volume), or S3-compatible object storage (MLOPEN_STORAGE_URL=s3://bucket/prefix, through
django-storages). On S3 a file is staged in a local temporary file and uploaded when committed,
and ``local_path`` gives a copy in this host's cache folder (MLOPEN_STORAGE_CACHE_DIR), downloaded
once: the runner's child process needs real files. That cache is never checked against the bucket
because stored names are write-once: datasets live under a fresh uuid folder, pipeline versions
under their new version number, trained models under their new number and run id, results under
their run id, and no code rewrites any of them in place. A deleted file is evicted from the
deleting host's cache; a copy cached by another host names something no new row can point to.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, default_storage

from mlopen_runner.job import MB, free_bytes, is_disk_full

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


def is_remote() -> bool:
    """True when stored files are objects in a bucket rather than files in a folder."""
    return not isinstance(default_storage, FileSystemStorage)


def _checked_name(storage_name: str) -> str:
    """storage_name, when it is a plain relative name that cannot leave the storage or the cache."""
    parts = (storage_name or "").split("/")
    if (
        not storage_name
        or "\x00" in storage_name
        or "\\" in storage_name
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ValueError(f"refusing storage name {storage_name!r}: not a plain relative name")
    return storage_name


def _cache_path(storage_name: str) -> Path:
    return Path(settings.MLOPEN_STORAGE_CACHE_DIR) / _checked_name(storage_name)


def describe(storage_name: str = "") -> str:
    """Where a name is stored, for messages: s3://bucket/prefix/name or the folder path."""
    if is_remote():
        key = "/".join(part for part in (default_storage.location, storage_name) if part)
        return f"s3://{default_storage.bucket_name}/{key}".rstrip("/")
    return str(Path(default_storage.location) / storage_name)


def local_root() -> Path:
    """The local folder stored files are written through: the storage folder, or in a bucket this
    host's cache, where every file is staged before it is uploaded. Its disk is the one that fills."""
    if is_remote():
        return Path(settings.MLOPEN_STORAGE_CACHE_DIR)
    return Path(default_storage.location)


def full_message() -> str:
    """Why an upload was refused on a full disk. No server path: whoever uploads reads it."""
    free = free_bytes(str(local_root()))
    room = "" if free is None else f" ({free / MB:.0f} MB free)"
    return f"The server's storage is full{room}: nothing was stored. Ask an admin to free some space, then try again."


@contextlib.contextmanager
def full_disk_as(refusal: Callable[[str], Exception]) -> Iterator[None]:
    """Turn a write refused for a full disk (ENOSPC, EDQUOT) into `refusal(full_message())`, the
    caller's own error, so an upload is answered 507 in plain words, not as a server error."""
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise refusal(full_message()) from exc


def local_path(storage_name: str) -> Path:
    """The filesystem path of a stored file.

    In a folder storage, the file itself. In a bucket, this host's cached copy, downloaded the
    first time it is asked for (to a temporary name, then renamed: a reader never sees half a
    file, and two processes downloading at once both end with a whole one). FileNotFoundError
    when the object is missing.
    """
    if not is_remote():
        return Path(default_storage.path(storage_name))
    target = _cache_path(storage_name)
    if not target.is_file():
        _download(storage_name, target)
    return target


def local_folder(storage_folder: str) -> Path:
    """A stored folder as a local folder holding every file stored under it (a pipeline version's code).

    In a bucket, the files are listed and downloaded once; a marker then tells later calls that the
    folder is complete (folders are write-once too), so a run costs no listing.
    """
    if not is_remote():
        return Path(default_storage.path(storage_folder))
    folder = _cache_path(storage_folder)
    marker = folder / _COMPLETE
    if not marker.is_file():
        names = list(_walk(storage_folder))
        if not names:
            raise FileNotFoundError(f"nothing is stored under {describe(storage_folder)}")
        for name in names:
            local_path(name)
        marker.touch()
    return folder


_COMPLETE = ".mlopen-complete"  # stored names never start with a dot (see safe_filename)


def _walk(storage_folder: str) -> Iterable[str]:
    directories, files = default_storage.listdir(_checked_name(storage_folder))
    for name in files:
        yield f"{storage_folder}/{name}"
    for name in directories:
        yield from _walk(f"{storage_folder}/{name}")


def _download(storage_name: str, target: Path) -> None:
    from botocore.exceptions import ClientError  # noqa: PLC0415 - optional: botocore only with s3:// storage

    key = default_storage._normalize_name(_checked_name(storage_name))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    try:
        with os.fdopen(fd, "wb") as out:
            default_storage.bucket.Object(key).download_fileobj(out)
        os.chmod(tmp, 0o640)
        os.replace(tmp, target)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(f"{storage_name} is missing from storage ({describe(storage_name)})") from None
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)


def _evict(storage_name: str) -> None:
    path = _cache_path(storage_name)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    # A folder that lost a file is no longer complete.
    parent = path.parent
    cache_root = Path(settings.MLOPEN_STORAGE_CACHE_DIR)
    while parent != cache_root and cache_root in parent.parents:
        (parent / _COMPLETE).unlink(missing_ok=True)
        parent = parent.parent


def _ensure_inside(path: Path) -> Path:
    root = _resolved_root(default_storage.location)
    resolved = path.resolve()
    if root != resolved and root not in resolved.parents:
        raise ValueError(f"refusing to write outside storage: {path}")
    return resolved


@functools.lru_cache(maxsize=8)
def _resolved_root(location: str) -> Path:
    # Resolved once per storage folder, not on every write: the folder itself does not move.
    return Path(location).resolve()


class StagedFile:
    """A file written under a temporary name beside its final place; ``commit`` moves it there.

    Lets a caller decide on what was actually received (a quota, the file's kind) before the
    file appears under its name, without reading it twice.
    """

    def __init__(self, target: Path, temporary: Path, size: int, sha256: str, upload_as: str | None = None):
        self.target = target
        self.path = temporary
        self.size = size
        self.sha256 = sha256
        self.upload_as = upload_as  # in a bucket: the object's name, uploaded by commit()

    def commit(self) -> None:
        if self.upload_as is not None and self.path != self.target:
            with open(self.path, "rb") as handle:
                saved = default_storage.save(self.upload_as, File(handle, name=self.upload_as))
            if saved != self.upload_as:  # file_overwrite=True keeps names; anything else is misconfigured
                default_storage.delete(saved)
                raise RuntimeError(f"storage renamed {self.upload_as!r} to {saved!r}: set file_overwrite")
        # In a bucket the staged file becomes this host's cached copy.
        os.replace(self.path, self.target)
        self.path = self.target

    def discard(self) -> None:
        if self.path != self.target:
            self.path.unlink(missing_ok=True)


def stage_stream(storage_name: str, chunks: Iterable[bytes]) -> StagedFile:
    """Write chunks to a temporary file beside storage_name; nothing is at storage_name yet."""
    remote = is_remote()
    target = _cache_path(storage_name) if remote else _ensure_inside(local_path(storage_name))
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
    return StagedFile(target, Path(tmp), size, digest.hexdigest(), upload_as=storage_name if remote else None)


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
    if is_remote():
        _checked_name(storage_name)
    return default_storage.exists(storage_name)


def open_stored(storage_name: str, mode: str = "rb") -> IO:
    if is_remote() and "r" in mode and "+" not in mode:
        return open(local_path(storage_name), mode)  # the caller closes it
    return default_storage.open(storage_name, mode)


def delete_tree(storage_folder: str) -> None:
    """Delete a stored folder and everything under it (or a single file of that name)."""
    if is_remote():
        for name in [storage_folder, *_walk(storage_folder)]:
            default_storage.delete(name)  # deleting a missing object is not an error
        _evict(storage_folder)
        return
    path = _ensure_inside(local_path(storage_folder))
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def delete_file(storage_name: str) -> None:
    if not storage_name:
        return
    if is_remote():
        default_storage.delete(_checked_name(storage_name))
        _evict(storage_name)
    elif default_storage.exists(storage_name):
        default_storage.delete(storage_name)


def probe() -> str:
    """'ok' when stored files can be reached (the folder is writable, the bucket answers), else why not."""
    try:
        if is_remote():
            client = default_storage.connection.meta.client
            prefix = f"{default_storage.location}/" if default_storage.location else ""
            # Listing under the prefix needs no more permission than mlopen's own work does.
            client.list_objects_v2(Bucket=default_storage.bucket_name, Prefix=prefix, MaxKeys=1)
            return "ok"
        folder = Path(default_storage.location)
        folder.mkdir(parents=True, exist_ok=True)  # as the first upload would
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"error: storage folder {folder} is not writable"
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        return f"error: {describe()}: {exc.__class__.__name__}: {exc}"[:300]
