"""A run's result: the table as Parquet (paged, sorted, filtered and streamed by DuckDB in
runs.result_queries), the graphs and text as JSON, its images as files (mlopen.runs.images).
Written once by the worker, read by the web pages, the API and downloads.

Where it is kept (:class:`Source`): in a storage folder (``result.json``, ``table.parquet``,
``images/``), or, when it is small and has no images, in the database as a RunResult row holding
the same bytes (:func:`keep`). A warm run's result is usually a few KB: two files written and
renamed (on S3, two uploads) cost more than the rest of storing it, and a run page then reads
them back. In the database it is written in the run's final transaction and read with the run.

Reading never trusts the files: one that is missing, cut short, not JSON or Parquet, of the wrong
shape or nested too deeply costs its part of the result (a message in ``problems``), never the
page. Pipelines shape what is stored, and a run page that answers 500 cannot be looked at.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings

from mlopen.core import prepared, storage
from mlopen.core.nesting import MAX_JSON_DEPTH, too_deep
from mlopen.runs import images as result_images
from mlopen.runs import result_queries as queries
from mlopen.runs.models import Run, RunResult

TABLE = "table.parquet"
META = "result.json"


UNREADABLE = "This result could not be shown: "
# Rows per Parquet row group: DuckDB reads a first page from the first group alone (5-10 ms for a
# million-row table, against 30-60 ms with pyarrow's default single group of up to a million rows).
ROW_GROUP_ROWS = 65_536


class ResultInvalid(ValueError):
    """The pipeline returned something mlopen cannot store or show."""


class ResultUnreadable(ValueError):
    """A stored result (or part of one) cannot be read; the message says why, for people."""

    def __init__(self, reason: str):
        super().__init__(UNREADABLE + reason)


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
            arrays.append(_column_array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arrays.append(pa.array([None if v is None else str(v) for v in values], type=pa.string()))
    return pa.Table.from_arrays(arrays, names=_column_names(columns, width))


def _column_array(values: list) -> pa.Array:
    """One column's values as an Arrow array, NaN as a missing value.

    from_pandas=True is what makes NaN missing, but it costs ten times the plain conversion (0.45
    against 0.04 ms for 7 columns of 100 numbers), so it is asked for only when a NaN is there to
    be made missing (``v != v`` is true for NaN alone). A JSON result rarely holds one: the runner
    writes NaN as null, and only a result that did not come through it can.
    """
    try:
        has_nan = any(v != v for v in values)
    except (TypeError, ValueError):  # a cell that does not compare plainly (never one from JSON)
        has_nan = True
    return pa.array(values, from_pandas=True) if has_nan else pa.array(values)


def folder_of(run_id: int) -> str:
    """The storage folder of a run's result (its id makes it the run's alone)."""
    return f"results/{run_id}"


@dataclass(frozen=True)
class InDatabase:
    """A result kept in the database (a RunResult row): result.json's text and table.parquet's
    bytes. ``meta`` is None when the row is gone."""

    meta: str | None
    table: bytes | None = None


# Where a result is: a storage folder's name, or the database.
Source = str | InDatabase


@dataclass(frozen=True)
class Kept:
    """Where :func:`keep` put a run's result: the Run fields that say so, and the RunResult row to
    write with them (None when it went to files)."""

    folder: str
    rows: int | None
    in_database: RunResult | None

    def run_fields(self) -> dict:
        return {
            "result_folder": self.folder,
            "result_rows": self.rows,
            "result_in_database": self.in_database is not None,
        }


def _table_bytes(result: dict) -> tuple[bytes | None, int | None, list[str] | None]:
    """The normalized result's table as Parquet bytes, its row count and its column names as shown
    (None, None, the given names: no table)."""
    data = result.get("data")
    columns = result.get("columns")
    if data is None:
        return None, None, columns
    table = _arrow_table(columns, data)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=ROW_GROUP_ROWS)
    # Names as given (repeats and all), then the generated ones for any extra data columns.
    given = [str(c) for c in columns or []]
    return buffer.getvalue(), table.num_rows, given + table.column_names[len(given) :]


def _meta_text(result: dict, columns, stored_images: list[dict]) -> str:
    text, warnings = _capped_text(result.get("text"), list(result.get("warnings") or []))
    meta = {
        "columns": columns if columns else None,
        "graphs": result.get("graphs") or [],
        "images": stored_images,
        "text": text,
        "warnings": warnings,
    }
    return json.dumps(meta)


def keep(run_id: int, result: dict, images: Sequence[dict] = ()) -> Kept:
    """Keep a run's normalized result (see mlopen_runner.results) and the runner's checked images:
    in the database when it has no images and its table and JSON together take at most
    MLOPEN_RESULT_IN_DATABASE_KB, else in files (:func:`store_result`). Nothing is written to the
    database here: the caller writes ``in_database`` with the run's outcome."""
    limit = settings.MLOPEN_RESULT_IN_DATABASE_KB * 1024
    if images or limit <= 0:
        return Kept(*store_result(run_id, result, images), None)
    table, rows, columns = _table_bytes(result)
    meta = _meta_text(result, columns, [])
    if len(meta) + len(table or b"") <= limit:
        return Kept("", rows, RunResult(run_id=run_id, meta=meta, table=table))
    folder = folder_of(run_id)
    _write_table(folder, table)
    _write_meta(folder, meta)
    return Kept(folder, rows, None)


def store_result(run_id: int, result: dict, images: Sequence[dict] = ()) -> tuple[str, int | None]:
    """Store a normalized result (see mlopen_runner.results) and the runner's checked images
    (Outcome.images) as files, whatever its size; return (storage folder, row count)."""
    folder = folder_of(run_id)
    table, rows, columns = _table_bytes(result)
    _write_table(folder, table)
    _write_meta(folder, _meta_text(result, columns, result_images.store(folder, list(images))))
    return folder, rows


def _write_table(folder: str, table: bytes | None) -> None:
    if table is not None:
        storage.write_stream(f"{folder}/{TABLE}", [table])


def _write_meta(folder: str, meta: str) -> None:
    storage.write_stream(f"{folder}/{META}", [meta.encode()])


# Every run page and run detail of a result kept in the database reads it: compiled once.
_STORED_RESULT = prepared.CompiledRows(
    lambda run_id: RunResult.objects.filter(run_id=run_id).values_list("meta", "table"), run_id=-2_000_000_321
)


def source_of(run: Run) -> Source | None:
    """Where a run's result is; None when it has none (it did not succeed, or returned nothing)."""
    if run.status != Run.Status.SUCCEEDED:
        return None
    if run.result_in_database:
        relation = Run.stored_result.related
        if relation.is_cached(run):  # read with the run (select_related, runs.lookups)
            row = cast(RunResult | None, relation.get_cached_value(run))
            found = [] if row is None else [(row.meta, row.table)]
        else:
            found = _STORED_RESULT.rows(run_id=run.pk)
        if not found:
            return InDatabase(None)
        meta, table = found[0]
        return InDatabase(meta, None if table is None else bytes(table))
    return run.result_folder or None


def _capped_text(text, warnings: list[str]) -> tuple[object, list[str]]:
    """The text result, cut to MLOPEN_MAX_TEXT_KB: every run page and run detail carries it whole."""
    limit = settings.MLOPEN_MAX_TEXT_KB * 1024
    if isinstance(text, str) and len(text) > limit:
        warnings = [
            *warnings,
            f"The text result has {len(text):,} characters; only the first {limit:,} are kept "
            f"(MLOPEN_MAX_TEXT_KB). Return long output as a table instead.",
        ]
        text = text[:limit]
    return text, warnings


def _max_bytes() -> int:
    # Neither file can be larger than the result the runner accepted, short of tampering.
    return settings.MLOPEN_MAX_RESULT_MB * 1024 * 1024


def _load_meta(source: Source) -> dict:
    """result.json as a dict, or ResultUnreadable saying why not."""
    limit = _max_bytes()
    if isinstance(source, InDatabase):
        if source.meta is None:
            raise ResultUnreadable("it is missing from the database.")
        raw = source.meta
    else:
        try:
            with storage.open_stored(f"{source}/{META}") as handle:
                raw = handle.read(limit + 1)
        except FileNotFoundError:
            raise ResultUnreadable(f"its file {META} is missing from storage.") from None
    if len(raw) > limit:
        raise ResultUnreadable(f"{META} is larger than MLOPEN_MAX_RESULT_MB ({settings.MLOPEN_MAX_RESULT_MB} MB).")
    try:
        # NaN and Infinity are not JSON: shown as missing values, as table cells are.
        meta = json.loads(raw, parse_constant=lambda name: None)
    except RecursionError:
        raise ResultUnreadable(f"{META} is nested too deeply.") from None
    except ValueError as exc:  # not JSON, cut short, not UTF-8
        raise ResultUnreadable(f"{META} is not valid JSON ({str(exc)[:200]}).") from None
    if not isinstance(meta, dict):
        raise ResultUnreadable(f"{META} holds {_a(meta)}, not an object.")
    return meta


def _a(value) -> str:
    """What a JSON value is, for messages: "a list", "a number"..."""
    names = {dict: "an object", list: "a list", str: "text", bool: "true or false", type(None): "null"}
    return names.get(type(value), "a number")


def _read_meta(source: Source) -> tuple[dict, dict[str, str]]:
    """The parts of result.json that can be shown, and {part: why not} for those that cannot.

    Parts: "result" (the file as a whole), "table" (its column names), "text", "warnings", "graphs"
    (the list) and "graphs.N" (graph N, left as None in the list so that graph numbers stay the same),
    "images" and "images.N" likewise.
    """
    shown: dict[str, Any] = {"columns": None, "graphs": [], "images": [], "text": None, "warnings": []}
    try:
        meta = _load_meta(source)
    except ResultUnreadable as exc:
        return shown, {"result": str(exc)}
    problems = {}
    columns = meta.get("columns")
    if columns is None or (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
        shown["columns"] = columns
    else:
        problems["table"] = UNREADABLE + f"the table's column names are {_a(columns)}, not a list of text."
    text = meta.get("text")
    if text is None or isinstance(text, str):
        shown["text"] = text
    else:
        problems["text"] = UNREADABLE + f"the text is {_a(text)}, not text."
    warnings = meta.get("warnings") or []
    if isinstance(warnings, list) and all(isinstance(w, str) for w in warnings):
        shown["warnings"] = warnings
    else:
        problems["warnings"] = UNREADABLE + "the warnings are not a list of text."
    graphs = meta.get("graphs") or []
    if not isinstance(graphs, list):
        problems["graphs"] = UNREADABLE + f"the graphs are {_a(graphs)}, not a list."
        graphs = []
    shown["graphs"] = []
    for index, graph in enumerate(graphs):
        why = _graph_problem(graph)
        if why:
            problems[f"graphs.{index}"] = UNREADABLE + f"graph {index + 1} {why}."
        shown["graphs"].append(None if why else graph)
    stored_images = meta.get("images") or []
    if not isinstance(stored_images, list):
        problems["images"] = UNREADABLE + f"the images are {_a(stored_images)}, not a list."
        stored_images = []
    for index, entry in enumerate(stored_images):
        why = result_images.problem_with(entry)
        if why:
            problems[f"images.{index}"] = UNREADABLE + f"image {index + 1} {why}."
        shown["images"].append(None if why else entry)
    return shown, problems


def _graph_problem(graph) -> str | None:
    """Why a stored graph cannot be shown, or None. The shapes mlopen_runner.results writes."""
    if not isinstance(graph, dict):
        return f"is {_a(graph)}, not an object"
    if too_deep(graph):
        return f"is nested more than {MAX_JSON_DEPTH} levels deep"
    if graph.get("kind") == "html":
        return None if isinstance(graph.get("html"), str) else "has no HTML text"
    if graph.get("kind") != "figure":
        return "is neither a figure nor HTML"
    figure = graph.get("figure")
    if not isinstance(figure, dict):
        return f"has a figure that is {_a(figure)}, not an object"
    if not isinstance(figure.get("data"), list) or not isinstance(figure.get("layout", {}), dict):
        return "has a figure without a list of traces and a layout object"
    return None


@dataclass(frozen=True)
class StoredTable:
    """A result's Parquet table, checked: its file (a path, or its bytes when it is kept in the
    database), Arrow schema and row count (read from its footer)."""

    file: queries.TableFile
    schema: pa.Schema
    rows: int


def _stored_table(source: Source, expected: bool = False) -> StoredTable | None:
    """The result's table; None when there is none (and none was ``expected``); else
    ResultUnreadable. Only the footer is read here: DuckDB reads the rows a request needs."""
    limit = _max_bytes()
    if isinstance(source, InDatabase):
        if source.table is None:
            if expected:
                raise ResultUnreadable("its table is missing from the database.")
            return None
        file: queries.TableFile = source.table
        size = len(source.table)
    else:
        name = f"{source}/{TABLE}"
        if not storage.exists(name):
            if expected:
                raise ResultUnreadable(f"its table file {TABLE} is missing from storage.")
            return None
        file = storage.local_path(name)
    try:
        if isinstance(file, Path):
            size = file.stat().st_size
        if size > limit:
            raise ResultUnreadable(f"{TABLE} is larger than MLOPEN_MAX_RESULT_MB ({settings.MLOPEN_MAX_RESULT_MB} MB).")
        with pq.ParquetFile(queries.readable(file)) as table_file:
            metadata = table_file.metadata
            # A file's own account of its size, checked before anything is decompressed into memory.
            unpacked = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
            if unpacked > 8 * limit:
                raise ResultUnreadable(f"{TABLE} would take {unpacked // 1024 // 1024:,} MB of memory to read.")
            if _type_depth(table_file.schema_arrow) > MAX_JSON_DEPTH:
                raise ResultUnreadable(f"{TABLE} has cells nested more than {MAX_JSON_DEPTH} levels deep.")
            return StoredTable(file, table_file.schema_arrow, metadata.num_rows)
    except ResultUnreadable:
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError, NotImplementedError) as exc:
        raise ResultUnreadable(f"{TABLE} is not a readable Parquet table ({str(exc)[:200]}).") from None


def _unreadable_rows(exc: Exception) -> ResultUnreadable:
    return ResultUnreadable(f"{TABLE} is not a readable Parquet table ({str(exc)[:200]}).")


def _type_depth(schema: pa.Schema) -> int:
    """How deeply the table's column types nest (a plain column is 1), measured without recursion."""
    deepest, stack = 0, [(field.type, 1) for field in schema]
    while stack:
        kind, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_JSON_DEPTH:
            stack.extend((kind.field(i).type, depth + 1) for i in range(kind.num_fields))
    return deepest


# Cells JSON holds as they are; checked first, by exact type: most cells are one of these.
_JSON_AS_IS = frozenset({int, str, bool, type(None)})


def _json_cell(value):
    """A cell as JSON can hold it. Nested cells (lists, structs) recurse: the schema bounds their depth."""
    kind = type(value)
    if kind in _JSON_AS_IS:
        return value
    if kind is float:  # the other common cell: without the look for isoformat below that it fails
        return value if math.isfinite(value) else None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple)):
        return [_json_cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_cell(v) for k, v in value.items()}
    return value


def page_of(
    source: Source,
    page: int = 1,
    page_size: int = 50,
    sort: int | None = None,
    descending: bool = False,
    *,
    expect_table: bool = False,
    filters: Sequence[str] = (),
    search: str = "",
) -> dict:
    """One page of a result: {"columns", "data", "rows", "page", "page_size", "pages", "graphs", "images",
    "text", "warnings", "problems"}.

    ``sort`` is a column index (names may repeat); rows are sorted, then ``filters``
    (``col:op:value``) and ``search`` keep some, then the page is cut (``rows`` counts the rows
    kept). A filter that cannot be used raises result_queries.QueryInvalid. ``expect_table`` (the
    run recorded a row count) makes a missing table file a problem rather than no table.
    ``problems`` maps each part that cannot be shown ("result", "table", "text", "warnings",
    "graphs", "graphs.N", "images", "images.N", "sort") to a message; that part is null (or left out)
    in the page. Images are {"name", "file", "type"} (None for one that cannot be shown).
    """
    meta, problems = _read_meta(source)
    out = {
        "columns": meta["columns"],
        "data": None,
        "rows": None,
        "page": page,
        "page_size": page_size,
        "pages": 0,
        "graphs": meta["graphs"],
        "images": meta["images"],
        "text": meta["text"],
        "warnings": meta["warnings"],
        "problems": problems,
    }
    if "result" in problems or "table" in problems:
        out["columns"] = None
        return out
    try:
        table = _stored_table(source, expected=expect_table)
    except ResultUnreadable as exc:
        problems["table"] = str(exc)
        out["columns"] = None
        return out
    if table is None:
        return out
    query = queries.TableQuery(tuple(filters), search, sort, descending)
    try:
        rows, chunk, sort_problem = queries.counted_page(
            table.file, table.schema, table.rows, query, meta["columns"], (page - 1) * page_size, page_size
        )
    except duckdb.Error as exc:
        problems["table"] = str(_unreadable_rows(exc))
        out["columns"] = None
        return out
    if sort_problem:
        problems["sort"] = sort_problem
    out.update(
        data=[[_json_cell(value) for value in row] for row in chunk],
        rows=rows,
        pages=max(1, math.ceil(rows / page_size)),
    )
    return out


DOWNLOAD_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}


def download(source: Source, fmt: str, query: queries.TableQuery | None = None) -> Iterator[bytes]:
    """The result table (sorted and filtered as ``query`` asks) as ``fmt`` (a key of DOWNLOAD_TYPES),
    streamed a batch of rows at a time: memory does not grow with the table.

    The file is checked and the query built when this is called (ResultUnreadable, QueryInvalid then),
    not when the bytes are consumed: a streamed download cannot turn into an error once it began.
    """
    meta, problems = _read_meta(source)
    table = _stored_table(source, expected=True)
    assert table is not None  # expected=True raises instead
    shown = None if "result" in problems or "table" in problems else meta["columns"]
    query = query or queries.TableQuery()
    queries.check(table.schema, query, shown)
    rows = queries.batches(table.file, table.schema, query, shown)
    if fmt == "csv":
        text = queries.csv_chunks(shown or table.schema.names, rows)
    elif fmt == "json":
        text = queries.json_chunks(shown or table.schema.names, rows, _json_cell)
    else:
        text = queries.ndjson_chunks(table.schema.names, rows, _json_cell)
    return (piece.encode() for piece in text)


def iter_csv(source: Source) -> Iterator[str]:
    """The whole result table as CSV (a batch of lines at a time), with formula-like cells neutralized;
    ResultUnreadable when it is called, if the table cannot be read."""
    return (piece.decode() for piece in download(source, "csv"))


def write_archive(source: Source, target: IO[bytes], table_name: str, with_table: bool) -> int:
    """The result as a zip in `target`: the table as CSV (named `table_name`, when `with_table`) and
    each image under images/ by its name; returns how many images went in. The table is read
    before anything is written (ResultUnreadable then); an image whose file is gone is left out."""
    lines = iter_csv(source) if with_table else None
    # A result kept in the database has no images (keep() sends results with images to files).
    folder = source if isinstance(source, str) else ""
    stored = [e for e in _read_meta(folder)[0]["images"] if e is not None] if folder else []
    written = 0
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        if lines is not None:
            with archive.open(table_name, "w") as table_file:
                for line in lines:
                    table_file.write(line.encode())
        for entry in stored:
            try:
                image = result_images.open_image(folder, entry)
            except FileNotFoundError:
                continue
            info = zipfile.ZipInfo(f"images/{entry['name']}", date_time=time.localtime()[:6])
            # PNG and JPEG are compressed already; deflating them again only costs time.
            info.compress_type = zipfile.ZIP_DEFLATED if entry["type"] == "svg" else zipfile.ZIP_STORED
            with image, archive.open(info, "w") as image_file:
                shutil.copyfileobj(image, image_file, 1024 * 1024)
            written += 1
    return written


def graph_at(source: Source, index: int) -> dict | None:
    """The result's graph number ``index`` (0-based), or None if there is no such graph or it cannot be read."""
    graphs = _read_meta(source)[0]["graphs"]
    return graphs[index] if 0 <= index < len(graphs) else None


def image_at(source: Source, index: int) -> dict | None:
    """The result's image number ``index`` (0-based) as {"name", "file", "type"}, or None if there
    is no such image or its entry cannot be read (a result kept in the database has none)."""
    if isinstance(source, InDatabase):
        return None
    stored = _read_meta(source)[0]["images"]
    return stored[index] if 0 <= index < len(stored) else None
