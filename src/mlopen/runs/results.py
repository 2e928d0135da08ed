"""A run's result on disk: the table as Parquet (paged and sorted without a database), the graphs
and text as JSON. Written once by the worker, read by the web pages, the API and downloads.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings

from mlopen.core import storage

TABLE = "table.parquet"
META = "result.json"
# Spreadsheet programs run cells that start with these as formulas (CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class ResultInvalid(ValueError):
    """The pipeline returned something mlopen cannot store or show."""


def _column_names(columns, width: int) -> list[str]:
    names = [str(c) for c in (columns or [])]
    names = names[:width] + [f"column {i + 1}" for i in range(len(names), width)]
    seen: dict[str, int] = {}
    unique = []
    for name in names:  # Parquet needs distinct column names; the page shows them as given
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if count == 0 else f"{name} ({count + 1})")
    return unique


def _arrow_table(columns, data) -> pa.Table:
    """The rows as an Arrow table, column by column (no pandas: this is on every run's path).

    Short rows are padded with nulls; a column mixing types (numbers and text) is kept as text.
    """
    rows = [row if isinstance(row, (list, tuple)) else [row] for row in data]
    width = max([len(r) for r in rows] + [len(columns or [])])
    padded = [r if len(r) == width else [*r, *([None] * (width - len(r)))] for r in rows]
    arrays = []
    for values in (list(column) for column in zip(*padded)) if padded else ([] for _ in range(width)):
        try:
            arrays.append(pa.array(values, from_pandas=True))  # from_pandas: NaN is a missing value
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arrays.append(pa.array([None if v is None else str(v) for v in values], type=pa.string()))
    return pa.Table.from_arrays(arrays, names=_column_names(columns, width))


def store_result(run_id: int, result: dict) -> tuple[str, int | None]:
    """Store a normalized result (see mlopen_runner.results); return (storage folder, row count)."""
    folder = f"results/{run_id}"
    data = result.get("data")
    columns = result.get("columns")
    rows = None
    if data is not None:
        table = _arrow_table(columns, data)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        storage.write_stream(f"{folder}/{TABLE}", [buffer.getvalue()])
        rows = table.num_rows
        # Names as given (repeats and all), then the generated ones for any extra data columns.
        given = [str(c) for c in columns or []]
        columns = given + table.column_names[len(given):]
    text, warnings = _capped_text(result.get("text"), list(result.get("warnings") or []))
    meta = {"columns": columns if columns else None, "graphs": result.get("graphs") or [],
            "text": text, "warnings": warnings}
    storage.write_stream(f"{folder}/{META}", [json.dumps(meta).encode()])
    return folder, rows


def _capped_text(text, warnings: list[str]) -> tuple[object, list[str]]:
    """The text result, cut to MLOPEN_MAX_TEXT_KB: every run page and run detail carries it whole."""
    limit = settings.MLOPEN_MAX_TEXT_KB * 1024
    if isinstance(text, str) and len(text) > limit:
        warnings = [*warnings, f"The text result has {len(text):,} characters; only the first {limit:,} are kept "
                               f"(MLOPEN_MAX_TEXT_KB). Return long output as a table instead."]
        text = text[:limit]
    return text, warnings


def _read_meta(folder: str) -> dict:
    with storage.open_stored(f"{folder}/{META}") as handle:
        return json.load(handle)


def _read_table(folder: str) -> pa.Table | None:
    name = f"{folder}/{TABLE}"
    if not storage.exists(name):
        return None
    # ParquetFile reads one file directly; read_table goes through the dataset layer (3x slower).
    with pq.ParquetFile(storage.local_path(name)) as table_file:
        return table_file.read()


def _json_cell(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def page_of(folder: str, page: int = 1, page_size: int = 50, sort: int | None = None,
            descending: bool = False) -> dict:
    """One page of a result: {"columns", "data", "rows", "page", "page_size", "pages", "graphs", "text"}.

    ``sort`` is a column index (names may repeat); rows are sorted before paging.
    """
    meta = _read_meta(folder)
    table = _read_table(folder)
    out = {"columns": meta.get("columns"), "data": None, "rows": None, "page": page, "page_size": page_size,
           "pages": 0, "graphs": meta.get("graphs") or [], "text": meta.get("text"),
           "warnings": meta.get("warnings") or []}
    if table is None:
        return out
    rows = table.num_rows
    if sort is not None and 0 <= sort < table.num_columns:
        table = table.sort_by([(table.column_names[sort], "descending" if descending else "ascending")])
    start = (page - 1) * page_size
    # Never slice past the end: pyarrow gives a table without columns as many rows as asked for.
    chunk = table.slice(start, max(0, min(page_size, rows - start))).to_pylist()
    names = table.column_names
    out.update(data=[[_json_cell(row[n]) for n in names] for row in chunk], rows=rows,
               pages=max(1, math.ceil(rows / page_size)))
    return out


def iter_csv(folder: str) -> Iterator[str]:
    """The whole result table as CSV lines, with formula-like cells neutralized."""
    meta = _read_meta(folder)
    table = _read_table(folder)
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def emit(row):
        writer.writerow(row)
        line = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return line

    if table is None:
        return
    yield emit([_neutralize(c) for c in (meta.get("columns") or table.column_names)])
    for batch in table.to_batches(max_chunksize=1000):
        for row in batch.to_pylist():
            yield emit([_neutralize(v) for v in row.values()])


def _neutralize(value):
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return "" if value is None else value


def as_json_rows(folder: str) -> dict:
    meta = _read_meta(folder)
    table = _read_table(folder)
    rows = [] if table is None else [[_json_cell(v) for v in row.values()] for row in table.to_pylist()]
    return {"columns": meta.get("columns"), "data": rows}


def graph_at(folder: str, index: int) -> dict | None:
    """The result's graph number ``index`` (0-based), or None if there is no such graph."""
    graphs = _read_meta(folder).get("graphs") or []
    return graphs[index] if 0 <= index < len(graphs) else None
