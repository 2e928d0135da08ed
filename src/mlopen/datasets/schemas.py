"""A table's schema (its columns, their types, how many rows), and how two schemas differ.

A model keeps the schema of the table it was trained on; a run's input is compared with it, so a
missing column or one whose type changed is said before the run starts (it still runs). Reading
a schema is bounded whatever the file's size: the first ``SAMPLE_BYTES`` of a CSV (at most
``SAMPLE_ROWS`` rows) give the columns and types, Parquet's footer gives them with the exact row
count, and a CSV's rows are counted exactly only up to ``COUNT_BYTES`` (estimated past that).
"""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlopen.core import storage
from mlopen.datasets.models import Dataset
from mlopen.datasets.services import guess_csv_format

SAMPLE_ROWS = 1000
SAMPLE_BYTES = 1024 * 1024
COUNT_BYTES = 64 * 1024 * 1024
_CHUNK = 1024 * 1024
_PARQUET = (".parquet", ".pq")
_DELIMITED = (".csv", ".tsv")

# Integers and floats are one family: a column of whole numbers with a gap reads as float.
_FAMILY = {"integer": "number", "float": "number"}


def is_tabular(dataset: Dataset) -> bool:
    name = dataset.filename.lower()
    return dataset.kind == Dataset.Kind.CSV or name.endswith(_PARQUET) or name.endswith(_DELIMITED)


def schema_of(dataset: Dataset | None) -> dict | None:
    """The dataset's schema, read once and kept on its row; None when it is not a table that can be read."""
    if dataset is None:
        return None
    if dataset.table_schema is None:
        try:
            schema = read_schema(dataset) or {}
        except (OSError, ValueError, pa.ArrowException, pd.errors.ParserError):
            schema = {}  # not a table after all (or unreadable): nothing to compare
        Dataset.objects.filter(pk=dataset.pk).update(table_schema=schema)
        dataset.table_schema = schema
    return dataset.table_schema or None


def read_schema(dataset: Dataset) -> dict | None:
    if not is_tabular(dataset):
        return None
    if dataset.filename.lower().endswith(_PARQUET):
        return _parquet_schema(dataset)
    return _csv_schema(dataset)


def _parquet_schema(dataset: Dataset) -> dict:
    with storage.open_stored(dataset.file) as handle:
        return parquet_schema(handle)


def parquet_schema(handle) -> dict:
    """A Parquet file's schema, from its footer only (a seekable binary handle)."""
    parquet = pq.ParquetFile(handle)
    columns = [{"name": field.name, "type": _arrow_type(field.type)} for field in parquet.schema_arrow]
    return {"columns": columns, "rows": parquet.metadata.num_rows, "rows_estimated": False}


def _arrow_type(kind) -> str:
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "float"
    if pa.types.is_temporal(kind):
        return "datetime"
    return "string"


def _csv_schema(dataset: Dataset) -> dict | None:
    with storage.open_stored(dataset.file) as handle:
        return csv_schema(handle, dataset.size)


def csv_schema(handle, size: int) -> dict | None:
    """A CSV's schema from a binary handle on it and its size in bytes (read: at most COUNT_BYTES)."""
    head = handle.read(SAMPLE_BYTES)
    rows, estimated = _count_rows(handle, head, size)
    text = head.decode("utf-8-sig", errors="replace")
    if len(head) == SAMPLE_BYTES and "\n" in text:
        text = text[: text.rindex("\n") + 1]  # the last line may be cut in half
    lines = text.splitlines()
    if not lines:
        return None
    frame = pd.read_csv(io.StringIO(text), nrows=SAMPLE_ROWS, **guess_csv_format(lines))
    columns = [{"name": str(name), "type": _pandas_type(frame[name])} for name in frame.columns]
    return {"columns": columns, "rows": rows, "rows_estimated": estimated}


def _count_rows(handle, head: bytes, size: int) -> tuple[int, bool]:
    """Data rows (lines after the header): counted up to COUNT_BYTES, estimated from that past it.
    Quoted fields holding line breaks are counted as more rows; the count is a guide, not a check."""
    lines, read = head.count(b"\n"), len(head)
    last = head[-1:]
    limit = min(size, COUNT_BYTES)
    while read < limit:
        chunk = handle.read(min(_CHUNK, limit - read))
        if not chunk:
            break
        lines += chunk.count(b"\n")
        read += len(chunk)
        last = chunk[-1:]
    if read < size:  # bigger than COUNT_BYTES: the same density of lines as the part read
        return max(0, round(lines * size / max(read, 1)) - 1), True
    if last and last != b"\n":
        lines += 1  # the last line has no line break
    return max(0, lines - 1), False


def _pandas_type(column: pd.Series) -> str:
    kind = column.dtype.kind
    if kind == "b":
        return "bool"
    if kind in "iu":
        return "integer"
    if kind == "f":
        return "float"
    if kind in "mM":
        return "datetime"
    return "string"


def compare(trained: dict | None, current: dict | None, input_name: str = "the input") -> list[dict]:
    """How ``current`` differs from the ``trained`` schema: [{kind, column, message}], empty when alike
    (or when either is not a table). Kinds: missing_column, extra_column, type_changed."""
    if not trained or not current:
        return []
    before = {column["name"]: column["type"] for column in trained.get("columns", [])}
    now = {column["name"]: column["type"] for column in current.get("columns", [])}
    warnings = []
    for name, kind in before.items():
        if name not in now:
            warnings.append(
                {
                    "kind": "missing_column",
                    "column": name,
                    "message": f"Column {name!r} ({kind}) that the model was trained on is missing from {input_name}.",
                }
            )
        elif _FAMILY.get(kind, kind) != _FAMILY.get(now[name], now[name]):
            warnings.append(
                {
                    "kind": "type_changed",
                    "column": name,
                    "message": f"Column {name!r} was {kind} in the training data and is {now[name]} in {input_name}.",
                }
            )
    for name in now:
        if name not in before:
            warnings.append(
                {
                    "kind": "extra_column",
                    "column": name,
                    "message": f"Column {name!r} of {input_name} was not in the training data.",
                }
            )
    return warnings
