"""Safe extraction of zip datasets, for pipelines that want a folder (`input.extract()`).

Every entry is checked before a byte is written: no absolute paths, no `..`, no drive letters or
backslash tricks, no symlinks, no device files. The number of entries and the bytes actually
written are capped, counted while extracting: the sizes in a zip's headers can lie (zip bombs).
Standard library only: this runs in the pipeline's child process.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import zipfile

DEFAULT_MAX_ENTRIES = int(os.environ.get("MLOPEN_ZIP_MAX_ENTRIES", "10000"))
DEFAULT_MAX_BYTES = int(os.environ.get("MLOPEN_ZIP_MAX_MB", "2048")) * 1024 * 1024
_CHUNK = 1024 * 1024


class UnsafeArchive(ValueError):
    """The archive has an entry mlopen refuses to extract, or it expands past the limits."""


def safe_member_path(name: str) -> str:
    if "\x00" in name:
        raise UnsafeArchive(f"zip entry {name!r} has a NUL byte in its name")
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        raise UnsafeArchive(f"zip entry {name!r} is an absolute path")
    parts = [p for p in normalized.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchive(f"zip entry {name!r} points outside the archive folder")
    return posixpath.join(*parts) if parts else ""


def is_link_or_special(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return bool(mode) and (
        stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
    )


def extract_zip(
    archive_path: str, destination: str, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES
) -> str:
    """Extract into ``destination`` (created); return it. On any refusal nothing is left behind."""
    destination = os.path.abspath(destination)
    os.makedirs(destination, exist_ok=True)
    written = 0
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = archive.infolist()
            if len(members) > max_entries:
                raise UnsafeArchive(f"the zip has {len(members)} entries; the limit is {max_entries}")
            for info in members:
                relative = safe_member_path(info.filename)
                if is_link_or_special(info):
                    raise UnsafeArchive(f"zip entry {info.filename!r} is a link or special file")
                if not relative:
                    continue
                target = os.path.join(destination, relative)
                if os.path.commonpath([destination, os.path.abspath(target)]) != destination:
                    raise UnsafeArchive(f"zip entry {info.filename!r} points outside the archive folder")
                if info.is_dir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with archive.open(info) as source, open(target, "xb") as out:
                    while chunk := source.read(_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise UnsafeArchive(
                                f"the zip expands to more than {max_bytes // (1024 * 1024)} MB; extraction stopped"
                            )
                        out.write(chunk)
    except (UnsafeArchive, zipfile.BadZipFile, FileExistsError) as exc:
        shutil.rmtree(destination, ignore_errors=True)
        if isinstance(exc, UnsafeArchive):
            raise
        raise UnsafeArchive(f"the zip cannot be extracted: {exc}") from None
    return destination
