"""Storing, previewing and deleting datasets. Files are streamed, never read whole into memory."""

from __future__ import annotations

import csv
import io
import mimetypes
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass
from itertools import islice

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Sum

from mlopen.core import storage
from mlopen.datasets.models import Dataset, StorageQuota

PREVIEW_ROWS = 20
_PREVIEW_BYTES = 256 * 1024
# How much of a CSV's start is read to guess its delimiter.
_SNIFF_LINES = 50
_SNIFF_CHARS = 64 * 1024
_DELIMITERS = ",;\t|"
_TEXT_EXTENSIONS = {".txt", ".tsv", ".json", ".jsonl", ".md", ".log", ".xml", ".yaml", ".yml"}


class DatasetRejected(ValueError):
    def __init__(self, message: str, field: str = "file", status: int = 400):
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


_MB = 1024 * 1024


@dataclass(frozen=True)
class StorageUsage:
    """What a user's datasets take, against their quota (``limit`` None: no limit)."""

    used: int
    limit: int | None

    @property
    def percent(self) -> int:
        if not self.limit:
            return 0
        return min(100, round(100 * self.used / self.limit))


def quota_bytes(user) -> int | None:
    """The user's quota in bytes: their StorageQuota row, else MLOPEN_USER_QUOTA_MB; None: no limit."""
    row = StorageQuota.objects.filter(user=user).values_list("megabytes", flat=True).first()
    megabytes = settings.MLOPEN_USER_QUOTA_MB if row is None else row
    return megabytes * _MB if megabytes else None


def storage_usage(user) -> StorageUsage:
    # Demo datasets belong to the admin who loaded them but are the platform's, not theirs.
    used = Dataset.objects.filter(owner=user, is_demo=False).aggregate(total=Sum("size"))["total"] or 0
    return StorageUsage(used=used, limit=quota_bytes(user))


def _megabytes(size: int) -> str:
    return f"{size / _MB:.1f}".rstrip("0").rstrip(".")


def check_quota(user, adding: int) -> None:
    """Refuse (413) when ``adding`` more bytes would take the user's datasets past their quota."""
    usage = storage_usage(user)
    if usage.limit is not None and usage.used + adding > usage.limit:
        raise DatasetRejected(
            f"Storage quota of {_megabytes(usage.limit)} MB exceeded: you use {_megabytes(usage.used)} MB and this "
            f"file is {_megabytes(adding)} MB. Delete datasets you no longer need or ask an admin for more space.",
            status=413,
        )


def detect_kind(filename: str, path) -> str:
    lower = filename.lower()
    if lower.endswith(".csv"):
        return Dataset.Kind.CSV
    if lower.endswith(".zip") or zipfile.is_zipfile(path):
        return Dataset.Kind.ZIP
    if any(lower.endswith(ext) for ext in _TEXT_EXTENSIONS):
        return Dataset.Kind.TEXT
    with open(path, "rb") as handle:
        head = handle.read(8192)
    if b"\x00" in head:
        return Dataset.Kind.OTHER
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the end of the sample is fine
            return Dataset.Kind.OTHER
    return Dataset.Kind.TEXT


class DatasetUnchanged(Exception):
    """The owner has a dataset of this name with exactly these bytes already; ``dataset`` is it."""

    def __init__(self, dataset: Dataset):
        super().__init__(f"dataset {dataset.pk} has exactly these bytes")
        self.dataset = dataset
        self.message = (
            f"You uploaded exactly this file as “{dataset.name}” already (dataset {dataset.pk}); "
            "that one is kept and no copy was made."
        )


def store_dataset(
    *,
    owner,
    name: str,
    filename: str,
    chunks,
    content_type: str = "",
    size: int | None = None,
    reuse_identical: bool = False,
) -> Dataset:
    """Stream an upload into storage and record it. ``chunks`` is an iterable of bytes.

    ``reuse_identical``: when the owner already has a dataset of the same name with the same bytes
    (sha256), the new copy is dropped and DatasetUnchanged names the existing one. Datasets have no
    versions: the same bytes under another name are another dataset, as the uploader asked.

    ``size``, when the caller knows it (a received upload), lets a file that cannot fit in the
    owner's quota be refused before it is copied. The quota is checked again on the bytes actually
    stored, before the file is moved into place, inside the transaction that records it.
    """
    safe = storage.safe_filename(filename, fallback="data")
    display = (name or "").strip() or safe
    if len(display) > 200:
        raise DatasetRejected("Dataset names are at most 200 characters.", field="name")
    check_quota(owner, size or 0)
    storage_name = f"datasets/{owner.pk}/{uuid.uuid4().hex}/{safe}"
    with storage.full_disk_as(lambda message: DatasetRejected(message, status=507)):
        return _stage_and_record(owner, display, safe, storage_name, chunks, content_type, reuse_identical)


def _stage_and_record(
    owner, display: str, safe: str, storage_name: str, chunks, content_type: str, reuse_identical: bool = False
) -> Dataset:
    """Stage the file, then record it and move it into place together; on any failure nothing is
    left: the folder is new (a fresh uuid), so removing it removes only what this upload wrote."""
    staged = None
    try:
        staged = storage.stage_stream(storage_name, chunks)
        if reuse_identical:
            same = Dataset.objects.filter(owner=owner, name=display, sha256=staged.sha256).order_by("pk").first()
            if same is not None:
                raise DatasetUnchanged(same)  # the except below removes the staged copy
        kind = detect_kind(safe, staged.path)
        guessed = content_type or mimetypes.guess_type(safe)[0] or "application/octet-stream"
        with transaction.atomic():
            # Lock the owner's row so that two uploads at once cannot both fit in the last space.
            # NO KEY UPDATE: runs being inserted for this user (a KEY SHARE lock each) need not wait.
            list(
                get_user_model().objects.select_for_update(no_key=True).filter(pk=owner.pk).values_list("pk", flat=True)
            )
            check_quota(owner, staged.size)
            staged.commit()
            return Dataset.objects.create(
                owner=owner,
                name=display,
                filename=safe,
                file=storage_name,
                size=staged.size,
                content_type=guessed[:120],
                kind=kind,
                sha256=staged.sha256,
            )
    except BaseException:
        if staged is not None:
            staged.discard()
        storage.delete_tree(storage_name.rsplit("/", 1)[0])
        raise


def delete_dataset(dataset: Dataset) -> None:
    folder = dataset.file.rsplit("/", 1)[0]
    with transaction.atomic():
        dataset.delete()
    storage.delete_tree(folder)


def preview(dataset: Dataset, rows: int = PREVIEW_ROWS) -> dict:
    """The first rows of a CSV (as a table) or the first lines of a text file.

    Returns {"kind": "table", "columns": [...], "rows": [[...]]} or {"kind": "text", "lines": [...]}
    or {"kind": "none", "message": ...}. Reads at most the first 256 KB of the file.
    """
    if dataset.kind == Dataset.Kind.ZIP:
        return _zip_listing(dataset, rows)
    if dataset.kind not in (Dataset.Kind.CSV, Dataset.Kind.TEXT):
        return {"kind": "none", "message": "No preview for this type of file."}
    with storage.open_stored(dataset.file) as handle:
        head = handle.read(_PREVIEW_BYTES)
    text = head.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if len(head) == _PREVIEW_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut in half (a file of one long line shows it cut)
    if dataset.kind == Dataset.Kind.CSV:
        try:
            table = list(islice(csv.reader(io.StringIO("\n".join(lines)), **guess_csv_format(lines)), rows + 1))
        except csv.Error:  # a field longer than the csv module's limit, say: show the lines instead
            table = []
        if table:
            return {"kind": "table", "columns": table[0], "rows": table[1:]}
    return {"kind": "text", "lines": lines[:rows]}


def guess_csv_format(lines: list[str]) -> dict:
    """The delimiter (and initial-space rule) of a CSV, from a bounded sample of its first lines.

    csv.Sniffer is not used: its regular expressions take quadratic time on hostile input (60 KB
    of ',"a' held a web worker for seconds). Here each candidate delimiter is tried with csv.reader,
    a linear state machine, on at most _SNIFF_LINES lines and _SNIFF_CHARS characters; the one
    giving the most rows of the same width (wider than one column) wins, then the wider, then the
    earlier candidate. When no delimiter splits anything: a comma, as csv.excel.
    """
    sample, budget = [], _SNIFF_CHARS
    for line in lines[:_SNIFF_LINES]:
        if budget <= 0:
            break
        sample.append(line[:budget])
        budget -= len(line) + 1
    best, best_score = ",", (0, 0)
    for delimiter in _DELIMITERS:
        try:
            widths = [len(row) for row in csv.reader(sample, delimiter=delimiter) if row]
        except csv.Error:
            continue
        width, count = Counter(widths).most_common(1)[0] if widths else (0, 0)
        if width > 1 and (count, width) > best_score:
            best, best_score = delimiter, (count, width)
    first = sample[0] if sample else ""
    # As csv.Sniffer decides it: every delimiter on the first line is followed by a space.
    return {"delimiter": best, "skipinitialspace": first.count(best) == first.count(best + " ")}


def _zip_listing(dataset: Dataset, rows: int) -> dict:
    try:
        with zipfile.ZipFile(storage.local_path(dataset.file)) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile:
        return {"kind": "none", "message": "This zip file cannot be read."}
    listing = [[info.filename, info.file_size] for info in infos[:rows]]
    return {
        "kind": "table",
        "columns": ["entry", "size (bytes)"],
        "rows": listing,
        "note": f"{len(infos)} entries" if len(infos) > rows else "",
    }
