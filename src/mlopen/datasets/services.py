"""Storing, previewing and deleting datasets. Files are streamed, never read whole into memory."""

from __future__ import annotations

import csv
import io
import mimetypes
import uuid
import zipfile
from itertools import islice

from django.db import transaction

from mlopen.core import storage
from mlopen.datasets.models import Dataset

PREVIEW_ROWS = 20
_PREVIEW_BYTES = 256 * 1024
_TEXT_EXTENSIONS = {".txt", ".tsv", ".json", ".jsonl", ".md", ".log", ".xml", ".yaml", ".yml"}


class DatasetRejected(ValueError):
    def __init__(self, message: str, field: str = "file"):
        super().__init__(message)
        self.message = message
        self.field = field


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


def store_dataset(*, owner, name: str, filename: str, chunks, content_type: str = "") -> Dataset:
    """Stream an upload into storage and record it. ``chunks`` is an iterable of bytes."""
    safe = storage.safe_filename(filename, fallback="data")
    display = (name or "").strip() or safe
    if len(display) > 200:
        raise DatasetRejected("Dataset names are at most 200 characters.", field="name")
    storage_name = f"datasets/{owner.pk}/{uuid.uuid4().hex}/{safe}"
    size, digest = storage.write_stream(storage_name, chunks)
    try:
        kind = detect_kind(safe, storage.local_path(storage_name))
        guessed = content_type or mimetypes.guess_type(safe)[0] or "application/octet-stream"
        with transaction.atomic():
            return Dataset.objects.create(owner=owner, name=display, filename=safe, file=storage_name, size=size,
                                          content_type=guessed[:120], kind=kind, sha256=digest)
    except BaseException:
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
    if len(head) == _PREVIEW_BYTES and lines:
        lines = lines[:-1]  # the last line may be cut in half
    if dataset.kind == Dataset.Kind.CSV:
        try:
            dialect = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        table = list(islice(csv.reader(io.StringIO("\n".join(lines)), dialect), rows + 1))
        if table:
            return {"kind": "table", "columns": table[0], "rows": table[1:]}
    return {"kind": "text", "lines": lines[:rows]}


def _zip_listing(dataset: Dataset, rows: int) -> dict:
    try:
        with zipfile.ZipFile(storage.local_path(dataset.file)) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile:
        return {"kind": "none", "message": "This zip file cannot be read."}
    listing = [[info.filename, info.file_size] for info in infos[:rows]]
    return {"kind": "table", "columns": ["entry", "size (bytes)"], "rows": listing,
            "note": f"{len(infos)} entries" if len(infos) > rows else ""}
