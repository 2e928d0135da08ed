"""Pages in stored order are read by pyarrow, others by DuckDB: both must give the same rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlopen.runs import result_queries as queries


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    """5 000 rows in row groups of 1 200 (pages then cross group boundaries), nulls and text included."""
    rows = 5_000
    table = pa.table(
        {
            "n": pa.array(range(rows)),
            "name": pa.array([None if i % 7 == 0 else f"row{i}" for i in range(rows)]),
            "score": pa.array([i / 3 for i in range(rows)]),
        }
    )
    path = tmp_path_factory.mktemp("pages") / "table.parquet"
    pq.write_table(table, path, row_group_size=1_200)
    return path, table.schema


@pytest.mark.parametrize(
    ("offset", "limit"), [(0, 50), (1_150, 100), (1_200, 1), (3_599, 2), (4_990, 50), (5_000, 10), (0, 5_000)]
)
def test_a_stored_order_page_is_the_same_rows_duckdb_gives(table_file, offset, limit, monkeypatch):
    path, schema = table_file
    by_pyarrow, problem = queries.page(path, schema, queries.TableQuery(), None, offset, limit)
    monkeypatch.setattr(queries, "STORED_ORDER_MAX_SKIP", -1)  # every page through DuckDB
    by_duckdb, _ = queries.page(path, schema, queries.TableQuery(), None, offset, limit)

    assert problem is None
    assert by_pyarrow == by_duckdb
    assert [row[0] for row in by_pyarrow] == list(range(offset, min(offset + limit, 5_000)))


def test_a_page_deep_inside_a_row_group_goes_to_duckdb(table_file, monkeypatch):
    path, schema = table_file
    monkeypatch.setattr(queries, "STORED_ORDER_MAX_SKIP", 100)
    calls = []
    real_connect = queries.connect
    monkeypatch.setattr(queries, "connect", lambda p: calls.append(p) or real_connect(p))

    shallow, _ = queries.page(path, schema, queries.TableQuery(), None, 1_250, 3)  # 50 rows into group 2
    deep, _ = queries.page(path, schema, queries.TableQuery(), None, 1_700, 3)  # 500 rows into it

    assert [row[0] for row in shallow] == [1_250, 1_251, 1_252]
    assert [row[0] for row in deep] == [1_700, 1_701, 1_702]
    assert calls == [path]


def test_a_sorted_or_filtered_page_still_goes_to_duckdb(table_file, monkeypatch):
    path, schema = table_file
    calls = []
    real_connect = queries.connect
    monkeypatch.setattr(queries, "connect", lambda p: calls.append(p) or real_connect(p))

    top, _ = queries.page(path, schema, queries.TableQuery(sort=0, descending=True), None, 0, 2)
    kept, _ = queries.page(path, schema, queries.TableQuery(filters=("n:lt:3",)), None, 0, 10)

    assert [row[0] for row in top] == [4_999, 4_998]
    assert [row[0] for row in kept] == [0, 1, 2]
    assert len(calls) == 2
