"""Pages, sorting, filtering and downloads of a stored result table, through DuckDB.

DuckDB reads the Parquet file itself: a sorted first page of a million rows is a top-N scan, not a
sort of the whole table in Python, and a download is a stream of record batches, never the whole
table in memory.

A page in stored order (no sort, filter or search: every run's first page, on the path of a warm
run's answer) is read with pyarrow instead: opening a DuckDB database costs ~16 ms, reading the
first rows of a file ~1-3 ms, whatever its size.

The table is untrusted content (a pipeline named its columns): no column name ever enters SQL.
The file's columns are renamed by position (``AS t(c0, c1, ...)``) and every value a request
gives is a bound parameter. Each query runs on a fresh in-memory connection that may read that
one file and nothing else (``allowed_paths`` with external access off), with a memory limit.

A small result's table kept in the database comes as the file's bytes instead of its path
(:data:`TableFile`): DuckDB then reads it as an Arrow table registered on the connection, which
may read no file at all.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from mlopen.core.numbers import parse_int

# A table.parquet: its path in storage, or its bytes (a result kept in the database).
TableFile = Path | bytes
_IN_MEMORY = "kept_table"  # the name a table given as bytes is registered under

OPS = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "contains": None}
MAX_FILTERS = 10
BATCH_ROWS = 10_000
# One query's working memory (a sort spills to a temporary folder past it): a web process serves
# many such requests, and a download must not grow with the table.
MEMORY_LIMIT = "256MB"
# A page in stored order that starts before this row is read by pyarrow, batch by batch from the
# row group that holds it; deeper pages go to DuckDB, which skips to them.
STORED_ORDER_MAX_SKIP = 50_000
_ROW = "_mlopen_row"  # the file's row number, to keep ties in stored order (sorts are not stable)


class QueryInvalid(ValueError):
    """A request's table parameters cannot be used; ``parameter`` names the one to fix."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter
        self.message = message


@dataclass(frozen=True)
class TableQuery:
    """What a request asks of a table: filters (``col:op:value``, all must hold), a search text
    (any cell contains it, ignoring case), a sort column (index from 0) and its direction."""

    filters: Sequence[str] = ()
    search: str = ""
    sort: int | None = None
    descending: bool = False

    @property
    def narrows(self) -> bool:
        return bool(self.filters or self.search)


@dataclass
class _Sql:
    where: list[str] = field(default_factory=list)
    params: dict[str, object] = field(default_factory=dict)

    def bind(self, value: object) -> str:
        name = f"v{len(self.params)}"
        self.params[name] = value
        return f"${name}"


def readable(file: TableFile) -> Path | pa.BufferReader:
    """What pyarrow's ParquetFile opens for ``file``."""
    return file if isinstance(file, Path) else pa.BufferReader(file)


def connect(file: TableFile) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that may read ``file`` only (no file at all when it is given as bytes)."""
    con = duckdb.connect(config={"threads": 2, "memory_limit": MEMORY_LIMIT})
    if isinstance(file, Path):
        con.execute("SET allowed_paths = $paths", {"paths": [str(file)]})
    else:
        table = pq.read_table(readable(file), use_threads=False)
        if _numbered(table.schema):  # read_parquet's file_row_number, for the same ties in sorts
            row_numbers = pa.array(range(table.num_rows), type=pa.int64())
            table = table.append_column("file_row_number", row_numbers)
        con.register(_IN_MEMORY, table)
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _column_index(raw: str, names: Sequence[str], shown: Sequence[str] | None) -> int:
    index = parse_int(raw)
    if index is not None and index < len(names):
        return index
    for candidates in (shown or [], names):
        if raw in candidates:
            return list(candidates).index(raw)
    listed = ", ".join(repr(n[:40]) for n in (shown or names)[:20])
    raise QueryInvalid("filter", f"The table has no column {raw[:80]!r} (give its name or index from 0: {listed}).")


def _typed_value(kind: pa.DataType, raw: str, column: str) -> tuple[str, object]:
    """(how the column is compared, the value to bind) for a comparison of column ``kind`` with ``raw``."""
    if _holds_numbers(kind):
        try:
            number = float(raw)
        except ValueError:
            raise QueryInvalid("filter", f"Column {column[:80]!r} holds numbers; {raw[:40]!r} is not one.") from None
        return "{c}", int(number) if number.is_integer() and abs(number) < 2**53 else number
    if pa.types.is_boolean(kind):
        if raw.lower() not in ("true", "false"):
            raise QueryInvalid("filter", f"Column {column[:80]!r} holds true or false, not {raw[:40]!r}.")
        return "{c}", raw.lower() == "true"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "{c}", raw
    return "CAST({c} AS VARCHAR)", raw  # dates, lists, structs...: compared as they are shown


def _where(query: TableQuery, schema: pa.Schema, shown: Sequence[str] | None) -> _Sql:
    sql = _Sql()
    names = schema.names
    if len(query.filters) > MAX_FILTERS:
        raise QueryInvalid("filter", f"At most {MAX_FILTERS} filters, got {len(query.filters)}.")
    for raw in query.filters:
        parts = raw.split(":", 2)
        if len(parts) != 3:
            raise QueryInvalid("filter", f"Write a filter as column:op:value, got {raw[:80]!r}.")
        column, op, value = parts
        index = _column_index(column, names, shown)
        if op not in OPS:
            raise QueryInvalid("filter", f"Unknown operator {op[:20]!r}: use one of {', '.join(OPS)}.")
        label = (shown or names)[index] if index < len(shown or names) else names[index]
        if op == "contains":
            sql.where.append(f"contains(lower(CAST(c{index} AS VARCHAR)), lower({sql.bind(value)}))")
            continue
        compared, bound = _typed_value(schema.field(index).type, value, label)
        sql.where.append(f"{compared.format(c=f'c{index}')} {OPS[op]} {sql.bind(bound)}")
    if query.search:
        searched = [i for i in range(len(names)) if _may_contain(schema.field(i).type, query.search)]
        cells = []
        needle = lowered = ""  # each bound only if used: DuckDB refuses a parameter left unused
        for i in searched:
            if _written_in_lower_case(schema.field(i).type):
                # Numbers and true/false are written in lower case ("1e+20", "inf"), and a needle
                # that can match them is ASCII (_may_contain): lowering each cell is wasted work.
                lowered = lowered or sql.bind(query.search.lower())
                cells.append(f"contains(CAST(c{i} AS VARCHAR), {lowered})")
            else:
                needle = needle or sql.bind(query.search)
                cells.append(f"contains(lower(CAST(c{i} AS VARCHAR)), lower({needle}))")
        sql.where.append(f"({' OR '.join(cells) or 'false'})")
    return sql


def _holds_numbers(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _written_in_lower_case(kind: pa.DataType) -> bool:
    return _holds_numbers(kind) or pa.types.is_boolean(kind)


# Every character of a number as DuckDB writes it ("-1.5e+20", "inf", "nan", "infinity").
_NUMBER_CHARACTERS = frozenset("0123456789-+.eEinfatyINFATY")


def _may_contain(kind: pa.DataType, text: str) -> bool:
    """Whether a cell of this type, written as text, can contain ``text`` (ignoring case).

    Searching every cell means writing every number of the table as text, most of the work of a
    search on a million rows; a needle with a letter no number has ("row12") cannot match one,
    so those columns are not read at all. The answer is the same either way.
    """
    if _holds_numbers(kind):
        return set(text) <= _NUMBER_CHARACTERS
    if pa.types.is_boolean(kind):
        lowered = text.lower()
        return lowered in "true" or lowered in "false"
    return True


def _numbered(schema: pa.Schema) -> bool:
    # DuckDB's row number column would clash with a column of the file that has its name.
    return "file_row_number" not in schema.names


def check(schema: pa.Schema, query: TableQuery, shown: Sequence[str] | None) -> None:
    """QueryInvalid now if ``query`` cannot be used on this table (before a download starts)."""
    width = len(schema.names)
    if query.sort is not None and query.sort >= width:
        raise QueryInvalid("sort", f"The table has {width} columns (0 to {width - 1}).")
    _where(query, schema, shown)


def _source(file: TableFile, schema: pa.Schema, sql: _Sql) -> str:
    numbered = _numbered(schema)
    columns = ", ".join([*(f"c{i}" for i in range(len(schema.names))), *([_ROW] if numbered else [])])
    if not isinstance(file, Path):
        return f"(SELECT * FROM {_IN_MEMORY}) AS t({columns})"
    options = ", file_row_number = true" if numbered else ""
    return f"(SELECT * FROM read_parquet({sql.bind(str(file))}{options})) AS t({columns})"


def _select(path: TableFile, schema: pa.Schema, query: TableQuery, shown: Sequence[str] | None, sort_ok: bool) -> tuple:
    sql = _where(query, schema, shown)
    source = _source(path, schema, sql)
    where = f" WHERE {' AND '.join(sql.where)}" if sql.where else ""
    order = ""  # DuckDB keeps a scan's rows in stored order (preserve_insertion_order)
    if sort_ok and query.sort is not None and 0 <= query.sort < len(schema.names):
        direction = "DESC" if query.descending else "ASC"
        ties = f", {_ROW}" if _numbered(schema) else ""
        order = f" ORDER BY c{query.sort} {direction} NULLS LAST{ties}"
    outputs = ", ".join(f"c{i}" for i in range(len(schema.names)))
    return f"SELECT {outputs} FROM {source}{where}{order}", sql.params, source, where


def count(path: TableFile, schema: pa.Schema, total: int, query: TableQuery, shown: Sequence[str] | None) -> int:
    """How many rows the query keeps (the file's own count when nothing narrows it)."""
    if not query.narrows or not schema.names:  # DuckDB reads no file without a column
        return total
    _sql, params, source, where = _select(path, schema, query, shown, sort_ok=False)
    with connect(path) as con:
        [(kept,)] = con.sql(f"SELECT count(*) FROM {source}{where}", params=params).fetchall()
    return int(kept)


def counted_page(
    path: TableFile,
    schema: pa.Schema,
    total: int,
    query: TableQuery,
    shown: Sequence[str] | None,
    offset: int,
    limit: int,
) -> tuple[int, list[list], str | None]:
    """How many rows the query keeps, and :func:`page` of them (empty past the last row).

    A filter or search reads the whole file to count what it keeps. The page is read first: when
    it holds the query's last row (the usual answer to a search that finds a few), the count
    follows from it and the file is read once, not twice.
    """
    if not query.narrows:  # the file's own count: no scan
        if offset >= total:
            return total, [], None
        rows, problem = page(path, schema, query, shown, offset, limit)
        return total, rows, problem
    rows, problem = page(path, schema, query, shown, offset, limit)
    if len(rows) < limit and (rows or offset == 0):
        return offset + len(rows), rows, problem
    return count(path, schema, total, query, shown), rows, problem


def page(
    path: TableFile, schema: pa.Schema, query: TableQuery, shown: Sequence[str] | None, offset: int, limit: int
) -> tuple[list[list], str | None]:
    """Rows ``offset`` to ``offset + limit`` of the query's answer, as Python values; and a message
    when the sort column could not be sorted (the rows then come in stored order)."""
    problem = None
    if not schema.names:
        return [], None
    if query.sort is None and not query.narrows:
        stored = _stored_order_page(path, offset, limit)
        if stored is not None:
            return _python_rows(stored, len(schema.names)), None
    with connect(path) as con:
        for sort_ok in (True, False):
            sql, params, _source_sql, _where_sql = _select(path, schema, query, shown, sort_ok)
            params = {**params, "limit": limit, "offset": offset}
            try:
                table = con.sql(f"{sql} LIMIT $limit OFFSET $offset", params=params).to_arrow_table()
                break
            except duckdb.Error:
                if not sort_ok or query.sort is None:
                    raise
                problem = (
                    f"Column {query.sort + 1} holds values that cannot be sorted; the rows are in their stored order."
                )
    return _python_rows(table, len(schema.names)), problem


def _python_rows(table: pa.Table, width: int) -> list[list]:
    columns = [table.column(i).to_pylist() for i in range(width)]
    return [list(row) for row in zip(*columns, strict=True)]


def _stored_order_page(path: TableFile, offset: int, limit: int) -> pa.Table | None:
    """Rows ``offset`` to ``offset + limit`` in stored order, read a batch at a time from the row
    group that holds row ``offset`` (a buffered stream: only the pages read are decompressed); None
    when that row lies more than STORED_ORDER_MAX_SKIP rows into its row group."""
    with pq.ParquetFile(readable(path), buffer_size=1 << 16, pre_buffer=False) as table_file:
        metadata = table_file.metadata
        group_start = 0
        for first_group in range(metadata.num_row_groups):
            group_rows = metadata.row_group(first_group).num_rows
            if offset < group_start + group_rows:
                break
            group_start += group_rows
        else:
            return table_file.schema_arrow.empty_table()
        skip = offset - group_start
        if skip > STORED_ORDER_MAX_SKIP:
            return None
        wanted: list[pa.RecordBatch] = []
        taken = 0
        groups = range(first_group, metadata.num_row_groups)
        # Without Arrow's thread pool: a page is a batch or two, read 3x faster on this thread than
        # handed to pool threads that must wake on a busy machine (0.06 against 0.15-0.19 ms for a
        # 100-row result; a million-row table's first page 1.7 against 1.2 ms, deep pages faster).
        batches = table_file.iter_batches(
            batch_size=max(1024, min(limit, BATCH_ROWS)), row_groups=groups, use_threads=False
        )
        for batch in batches:
            if skip >= batch.num_rows:  # still before the page
                skip -= batch.num_rows
                continue
            piece = batch.slice(skip, limit - taken)
            skip = 0
            wanted.append(piece)
            taken += piece.num_rows
            if taken >= limit:
                break
        return pa.Table.from_batches(wanted, schema=table_file.schema_arrow)


def batches(
    path: TableFile, schema: pa.Schema, query: TableQuery, shown: Sequence[str] | None
) -> Iterator[pa.RecordBatch]:
    """The query's rows as record batches of at most BATCH_ROWS, read as they are consumed."""
    if not schema.names:
        return
    sql, params, _source_sql, _where_sql = _select(path, schema, query, shown, sort_ok=True)
    con = connect(path)
    try:
        reader = con.sql(sql, params=params).to_arrow_reader(BATCH_ROWS)
        yield from reader
    finally:
        con.close()


# --- downloads ------------------------------------------------------------------------------------

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value):
    """A cell for CSV: text a spreadsheet would run as a formula gets a leading quote (CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return "" if value is None else value


def csv_chunks(columns: Sequence[str], rows: Iterator[pa.RecordBatch]) -> Iterator[str]:
    """The header and then one string per batch of CSV lines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([neutralize(c) for c in columns])
    yield buffer.getvalue()
    for batch in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([neutralize(v) for v in row] for row in _rows(batch))
        yield buffer.getvalue()


def json_chunks(columns: Sequence[str], rows: Iterator[pa.RecordBatch], json_cell) -> Iterator[str]:
    """{"columns": [...], "data": [[...], ...]}, written a batch at a time."""
    yield '{"columns": ' + json.dumps(list(columns)) + ', "data": ['
    first = True
    for batch in rows:
        body = ", ".join(json.dumps([json_cell(v) for v in row]) for row in _rows(batch))
        if body:
            yield ("" if first else ", ") + body
            first = False
    yield "]}\n"


def ndjson_chunks(names: Sequence[str], rows: Iterator[pa.RecordBatch], json_cell) -> Iterator[str]:
    """One JSON object per line, keyed by the table's (distinct) column names."""
    for batch in rows:
        lines = [json.dumps(dict(zip(names, (json_cell(v) for v in row), strict=True))) for row in _rows(batch)]
        if lines:
            yield "\n".join(lines) + "\n"


def _rows(batch: pa.RecordBatch) -> Iterator[tuple]:
    return zip(*(column.to_pylist() for column in batch.columns), strict=True)
