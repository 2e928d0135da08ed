"""Reading a pipeline version's files: its tree, one file's source, and what changed between two versions.

Only the files a version lists (its control file and ``support_files``) can be named here: a path
that is not one of them is "no such file", whatever it contains, so no request path ever reaches
the filesystem unchecked. Who may read them is the caller's question (the same people who may run
the pipeline: ``Pipeline.objects.visible_to``).
"""

from __future__ import annotations

import difflib
import filecmp
from dataclasses import dataclass, field
from pathlib import Path

from mlopen.core import storage
from mlopen.pipelines.models import PipelineVersion

# Larger files are offered as a download, with their size, rather than shown or diffed.
MAX_SHOWN_BYTES = 512 * 1024
MAX_DIFF_LINES = 3000  # of one file's diff; the rest is cut with a note


class FileMissing(LookupError):
    """The version has no file at that path, or its stored copy is gone."""


@dataclass
class VersionFile:
    path: str
    size: int | None  # None: listed by the version but missing from storage
    is_control: bool = False

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class Source:
    path: str
    size: int
    text: str | None  # None when it is binary or larger than MAX_SHOWN_BYTES
    too_large: bool = False
    is_control: bool = False

    @property
    def is_binary(self) -> bool:
        return self.text is None and not self.too_large


@dataclass
class TreeRow:
    name: str
    depth: int
    path: str  # the folder's path for a folder
    is_folder: bool = False
    file: VersionFile | None = None


@dataclass
class FileChange:
    path: str
    status: str  # added, removed, changed, same
    lines: list[tuple[str, str]] = field(default_factory=list)  # (kind, text): kind is add, del, hunk, context
    note: str = ""  # why no lines are shown (binary, too large) or that they were cut


def paths_of(version: PipelineVersion) -> list[str]:
    return [version.control_filename, *version.support_files]


def local_file(version: PipelineVersion, path: str) -> Path:
    """The local copy of one of the version's files; FileMissing for any path it does not list."""
    if path not in paths_of(version):
        raise FileMissing(path)
    try:
        local = storage.local_folder(version.folder) / path
    except FileNotFoundError:
        raise FileMissing(path) from None
    if not local.is_file():
        raise FileMissing(path)
    return local


def files_of(version: PipelineVersion) -> list[VersionFile]:
    """The version's files, control file first, then its support files by path."""
    try:
        folder = storage.local_folder(version.folder)
    except FileNotFoundError:
        folder = None
    found = []
    for path in [version.control_filename, *sorted(version.support_files)]:
        local = folder / path if folder is not None else None
        size = local.stat().st_size if local is not None and local.is_file() else None
        found.append(VersionFile(path, size, is_control=path == version.control_filename))
    return found


def tree_of(files: list[VersionFile]) -> list[TreeRow]:
    """The files as the rows of an indented tree: in each folder, its files, then its subfolders."""
    rows: list[TreeRow] = []

    def walk(entries: list[VersionFile], prefix: str, depth: int) -> None:
        here = [f for f in entries if "/" not in f.path[len(prefix) :]]
        below: dict[str, list[VersionFile]] = {}
        for f in entries:
            rest = f.path[len(prefix) :]
            if "/" in rest:
                below.setdefault(rest.split("/", 1)[0], []).append(f)
        for f in sorted(here, key=lambda f: (not f.is_control, f.path.casefold())):
            rows.append(TreeRow(f.name, depth, f.path, file=f))
        for folder in sorted(below, key=str.casefold):
            rows.append(TreeRow(folder, depth, prefix + folder, is_folder=True))
            walk(below[folder], f"{prefix}{folder}/", depth + 1)

    walk(files, "", 0)
    return rows


def _decoded(data: bytes) -> str | None:
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def read_source(version: PipelineVersion, path: str) -> Source:
    local = local_file(version, path)
    size = local.stat().st_size
    is_control = path == version.control_filename
    if size > MAX_SHOWN_BYTES:
        return Source(path, size, None, too_large=True, is_control=is_control)
    return Source(path, size, _decoded(local.read_bytes()), is_control=is_control)


def diff_versions(old: PipelineVersion, new: PipelineVersion) -> list[FileChange]:
    """Every file of either version: added, removed, changed (with a unified diff when it is text) or the same."""
    old_paths, new_paths = set(paths_of(old)), set(paths_of(new))
    changes = []
    for path in sorted(old_paths | new_paths, key=lambda p: (p.count("/"), p.casefold())):
        if path not in old_paths:
            changes.append(_one_sided(new, path, "added", "+"))
        elif path not in new_paths:
            changes.append(_one_sided(old, path, "removed", "-"))
        else:
            changes.append(_compared(old, new, path))
    return changes


def _text_or_none(version: PipelineVersion, path: str) -> tuple[str | None, str]:
    """A file's text for a diff, or None with why not."""
    try:
        source = read_source(version, path)
    except FileMissing:
        return None, f"missing from storage in version {version.number}"
    if source.too_large:
        return None, f"too large to compare here ({source.size} bytes); download both versions"
    if source.text is None:
        return None, "a binary file"
    return source.text, ""


def _one_sided(version: PipelineVersion, path: str, status: str, mark: str) -> FileChange:
    text, note = _text_or_none(version, path)
    if text is None:
        return FileChange(path, status, note=note)
    lines = [("add" if mark == "+" else "del", f"{mark}{line}") for line in text.splitlines()]
    return _capped(FileChange(path, status, lines))


def _compared(old: PipelineVersion, new: PipelineVersion, path: str) -> FileChange:
    try:
        same = filecmp.cmp(local_file(old, path), local_file(new, path), shallow=False)
    except FileMissing:
        same = False
    if same:
        return FileChange(path, "same")
    before, why_not_before = _text_or_none(old, path)
    after, why_not_after = _text_or_none(new, path)
    if before is None or after is None:
        return FileChange(path, "changed", note=why_not_after or why_not_before)
    diff = difflib.unified_diff(
        before.splitlines(),
        after.splitlines(),
        fromfile=f"v{old.number}/{path}",
        tofile=f"v{new.number}/{path}",
        lineterm="",
    )
    lines = []
    for line in diff:
        if line.startswith(("---", "+++")):
            continue
        kind = {"@": "hunk", "+": "add", "-": "del"}.get(line[:1], "context")
        lines.append((kind, line))
    if not lines:  # the bytes differ, the lines do not (line endings, a byte order mark)
        return FileChange(path, "changed", note="only line endings or encoding marks differ")
    return _capped(FileChange(path, "changed", lines))


def _capped(change: FileChange) -> FileChange:
    if len(change.lines) > MAX_DIFF_LINES:
        cut = len(change.lines) - MAX_DIFF_LINES
        change.lines = change.lines[:MAX_DIFF_LINES]
        change.note = f"{cut} more lines are not shown; download both versions to compare them whole."
    return change
