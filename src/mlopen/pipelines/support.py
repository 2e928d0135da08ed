"""The paths support files are kept under, and zips and folders of them unpacked.

A support file keeps the relative path it was sent with (``textnet/model.py``,
``nltk_data/corpora/stopwords/english``) under the version's folder, beside the control file, so
subpackages and data folders work as they did on the author's machine. A path is kept exactly as
sent, never rewritten: code opens its files by those names.

Refused, each with the file's name in the message (nothing is stored then): a NUL or another
control character, a backslash (also one that NFKC normalization would make, e.g. a fullwidth
one), an absolute path or a drive letter, a ``..`` part, a part starting with "." (hidden files;
storage keeps its own markers under such names), two files with the same path, or with paths
that differ only in upper/lower case (one file on Windows and macOS, and on a case-insensitive
disk the second would silently replace the first), a path that is both a file and a folder, and
a path equal to the control file's. In a zip, also a link (symlink entry) or special file, and
the existing entry-count and expanded-size caps (mlopen_runner.archives) against zip bombs.

From a folder picker or a zip, what an author never meant to ship is left out instead of refused:
hidden files and folders (.git, .DS_Store), __pycache__ and macOS's __MACOSX.
"""

from __future__ import annotations

import re
import unicodedata
import zipfile
import zlib
from pathlib import Path

from mlopen.pipelines.control import PipelineRejected
from mlopen_runner import archives

MAX_PATH_CHARS = 400
MAX_PART_CHARS = 150
MAX_DEPTH = 32
_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1024 * 1024


def _shown(raw: str) -> str:
    """The name for a message: quoted, control characters escaped, not too long."""
    text = repr(raw)
    return text if len(text) <= 120 else text[:117] + "…'"


def _refuse(message: str, field: str) -> PipelineRejected:
    return PipelineRejected(message, field=field)


def support_path(raw: str, field: str = "support_files") -> str:
    """The path a support file sent as ``raw`` is kept under; PipelineRejected saying why not."""
    shown = _shown(raw)
    # Each check on the NFKC form too: "..／x" (a fullwidth solidus) must not become "../x" anywhere later.
    forms = list(dict.fromkeys([raw, unicodedata.normalize("NFKC", raw)]))

    def parts_of(form: str) -> list[str]:
        return [part for part in form.split("/") if part not in ("", ".")]

    checks = [
        (lambda form: "\x00" in form, "has a NUL byte in its name."),
        (lambda form: any(unicodedata.category(c) == "Cc" for c in form), "has a control character in its name."),
        (lambda form: "\\" in form, "has a backslash in its path; separate folders with '/'."),
        (
            lambda form: form.startswith("/") or _DRIVE.match(form),
            "has an absolute path; give its path inside the pipeline's folder.",
        ),
        (lambda form: ".." in parts_of(form), "has '..' in its path, which would leave the pipeline's folder."),
        (
            lambda form: any(part.startswith(".") for part in parts_of(form)),
            "is hidden (a name starting with '.'); hidden files are not kept.",
        ),
    ]
    for refused, why in checks:
        if any(refused(form) for form in forms):
            raise _refuse(f"The support file {shown} {why}", field)
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if not parts:
        raise _refuse(f"The support file {shown} has no file name.", field)
    if len(raw) > MAX_PATH_CHARS or len(parts) > MAX_DEPTH or any(len(part) > MAX_PART_CHARS for part in parts):
        raise _refuse(
            f"The support file {shown} has too long a path (at most {MAX_PATH_CHARS} characters, "
            f"{MAX_DEPTH} folders deep, {MAX_PART_CHARS} characters a name).",
            field,
        )
    return "/".join(parts)


def check_distinct(control_name: str, paths: list[str], fields: list[str] | None = None) -> None:
    """Refuse two files at one path (also differing only in case), a path that is a file and a folder,
    and a support file at the control file's path. ``fields``: the form field each path came from."""
    files: dict[str, str] = {}
    folders: dict[str, tuple[str, str]] = {}

    def key(path: str) -> str:
        return unicodedata.normalize("NFC", path).casefold()

    for path, field in zip(paths, fields or ["support_files"] * len(paths)):
        if path == control_name:
            raise _refuse(
                f"Two files are named {path!r}: the control file and a support file; "
                "every file of a pipeline needs its own path.",
                field,
            )
        if path in files.values():
            raise _refuse(f"Two files are named {path!r}; every file of a pipeline needs its own path.", field)
        if key(path) == key(control_name) or key(path) in files:
            other = control_name if key(path) == key(control_name) else files[key(path)]
            raise _refuse(
                f"{other!r} and {path!r} differ only in upper/lower case; give them different names "
                "(on Windows and macOS they would be one file).",
                field,
            )
        files[key(path)] = path
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folders.setdefault(key("/".join(parts[:depth])), ("/".join(parts[:depth]), field))
    for folder_key, (folder, field) in folders.items():
        if folder_key in files or folder_key == key(control_name):
            raise _refuse(f"{folder!r} is both a file and a folder; rename one of them.", field)


def left_out(path: str) -> bool:
    """Whether a file of a picked folder or a zip is skipped: hidden, __pycache__, __MACOSX."""
    parts = [part for part in path.replace("\\", "/").split("/") if part not in ("", ".")]
    return any(part.startswith(".") or part in ("__pycache__", "__MACOSX") for part in parts)


def unpack_zip(zip_path: Path, shown_name: str, into: Path) -> list[tuple[str, Path]]:
    """The files of the zip at ``zip_path`` as (path inside the zip, extracted copy under ``into``).

    Nothing is written outside ``into``: entries are extracted under numbered names and their paths
    are only checked here, then placed by the caller like any other support file.
    """
    field = "support_zip"
    into.mkdir(parents=True, exist_ok=True)
    written = 0
    unpacked: list[tuple[str, Path]] = []
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = archive.infolist()
            if len(members) > archives.DEFAULT_MAX_ENTRIES:
                raise _refuse(
                    f"{shown_name} has {len(members)} entries; the limit is {archives.DEFAULT_MAX_ENTRIES}.", field
                )
            for index, info in enumerate(members):
                try:
                    relative = archives.safe_member_path(info.filename)
                except archives.UnsafeArchive as exc:
                    raise _refuse(f"{shown_name}: {exc}.", field) from None
                if archives.is_link_or_special(info):
                    raise _refuse(
                        f"{shown_name}: zip entry {info.filename!r} is a link or special file; only files are kept.",
                        field,
                    )
                if info.is_dir() or not relative or left_out(relative):
                    continue
                target = into / str(index)
                with archive.open(info) as source, open(target, "xb") as out:
                    while chunk := source.read(_CHUNK):
                        written += len(chunk)
                        if written > archives.DEFAULT_MAX_BYTES:
                            raise _refuse(
                                f"{shown_name} expands to more than {archives.DEFAULT_MAX_BYTES // (1024 * 1024)} MB.",
                                field,
                            )
                        out.write(chunk)
                unpacked.append((relative, target))
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise _refuse(f"{shown_name} is not a zip file that can be read ({exc}).", field) from None
    except (RuntimeError, NotImplementedError) as exc:  # encrypted, or a compression zipfile cannot read
        raise _refuse(f"{shown_name} cannot be unpacked: {exc}", field) from None
    return unpacked
