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


@pytest.mark.parametrize(
    "needle",
    ["row1", "ROW49", "33", "1.6", "-", "e", "inf", "nan", "3.0", "tru", "fal", "x", "row4999", "99"],
)
def test_a_search_finds_what_searching_every_cell_as_text_finds(table_file, needle, monkeypatch):
    """Columns a needle cannot be in (a number column and "row1") are not read: same answer either way."""
    path, schema = table_file
    query = queries.TableQuery(search=needle)
    pruned = queries.counted_page(path, schema, 5_000, query, None, 0, 5_000)
    monkeypatch.setattr(queries, "_may_contain", lambda kind, text: True)
    every_cell = queries.counted_page(path, schema, 5_000, query, None, 0, 5_000)

    assert pruned == every_cell


@pytest.mark.parametrize("needle", ["INF", "NaN", "1E+20", "e-07", "-1.5", "1.2", "TRUE", "7", "Ab"])
def test_number_and_true_false_cells_are_searched_without_lowering_each_one_with_the_same_answer(tmp_path, needle):
    """Those cells are written in lower case, so only the needle is lowered: the rows kept are the
    ones lowering every cell as text keeps."""
    import decimal

    import duckdb

    path = tmp_path / "numbers.parquet"
    rows = 8
    pq.write_table(
        pa.table(
            {
                "row": [f"r{n}" for n in range(rows)],
                "f": [float("inf"), float("-inf"), float("nan"), 1e20, 1e-07, -1.5, 1.25, None],
                "i": [7, -17, 0, 70, None, 12, 3, 4],
                "d": pa.array(
                    [decimal.Decimal("1.20"), None, *[decimal.Decimal(n) for n in range(6)]], pa.decimal128(5, 2)
                ),
                "flag": [True, False, None, True, False, True, False, True],
                "text": ["Abc", "INF row", "nan", "x", "E-07", "y", None, "TRUE"],
            }
        ),
        path,
    )
    schema = pq.read_schema(path)
    kept = queries.counted_page(path, schema, rows, queries.TableQuery(search=needle), None, 0, rows)[1]

    every_cell = " OR ".join(f"contains(lower(CAST({name} AS VARCHAR)), lower($n))" for name in schema.names)
    sql = f"SELECT row FROM read_parquet('{path}') WHERE {every_cell}"
    expected = [row for (row,) in duckdb.sql(sql, params={"n": needle}).fetchall()]
    assert [row[0] for row in kept] == expected
    assert expected  # every needle finds something


def test_a_boolean_column_is_searched_as_true_and_false(tmp_path):
    path = tmp_path / "flags.parquet"
    pq.write_table(pa.table({"flag": [True, False, None]}), path)
    schema = pq.read_schema(path)

    def found(needle):
        return queries.counted_page(path, schema, 3, queries.TableQuery(search=needle), None, 0, 10)[1]

    assert found("RU") == [[True]]
    assert found("als") == [[False]]
    assert found("1") == []


@pytest.mark.parametrize(
    ("offset", "limit", "rows_on_page"),
    [(0, 100, 100), (0, 20, 20), (100, 20, 20), (940, 20, 13), (953, 20, 0), (5_000, 20, 0), (0, 2_000, 953)],
)
def test_a_searched_page_counts_every_row_kept_whichever_page_it_is(table_file, offset, limit, rows_on_page):
    path, schema = table_file
    query = queries.TableQuery(search="row1")  # row1, row10-19, row100-199, row1000-1999 but every 7th (None): 953

    rows, page, problem = queries.counted_page(path, schema, 5_000, query, None, offset, limit)

    assert rows == queries.count(path, schema, 5_000, query, None) == 953
    assert len(page) == rows_on_page
    assert problem is None
