"""Small results kept in the database (runs.results.keep, RunResult): where keep() puts a result,
and that every way of reading one (pages, sorts, filters, searches, downloads, the zip, graphs)
answers exactly what the same result kept in files answers, tampered content included."""

from __future__ import annotations

import io
import itertools
import json
import zipfile

import pytest

from mlopen.core import storage
from mlopen.runs import result_queries as queries
from mlopen.runs import results

_run_ids = itertools.count(9_100_001)  # result folders of their own, apart from real runs' results

# Ties in "score" (sorts keep stored order among them), missing values, text and numbers mixed in
# one column (kept as text) and a nested cell.
RESULT = {
    "columns": ["name", "score", "mixed", "rank", "tags"],
    "data": [
        [f"row {i}", (i * 7) % 5 if i % 9 else None, i if i % 2 else f"t{i}", 100 - i, [i, i + 1]] for i in range(120)
    ],
    "graphs": [{"kind": "figure", "figure": {"data": [{"type": "bar", "x": [1, 2], "y": [3, 4]}], "layout": {}}}],
    "text": "120 rows",
    "warnings": ["a warning"],
}

QUERIES = [
    {},
    {"page": 3, "page_size": 50},
    {"sort": 1},
    {"sort": 1, "descending": True, "page": 2, "page_size": 25},
    {"sort": 3},
    {"sort": 2},
    {"filters": ["score:ge:3"]},
    {"filters": ["name:contains:1", "score:lt:4"], "sort": 0, "descending": True},
    {"search": "row 1"},
    {"search": "t4", "sort": 3},
    {"page": 9},
]


@pytest.fixture
def both():
    """The same result kept in files and in the database: (folder, InDatabase, Kept)."""
    run_id = next(_run_ids)
    folder, rows = results.store_result(run_id, dict(RESULT))
    kept = results.keep(next(_run_ids), dict(RESULT))
    assert kept.in_database is not None, "a 120-row result fits in the default MLOPEN_RESULT_IN_DATABASE_KB"
    assert (kept.rows, kept.folder) == (rows, "")
    yield folder, results.InDatabase(kept.in_database.meta, kept.in_database.table), kept
    storage.delete_tree(folder)


@pytest.mark.parametrize("query", QUERIES, ids=[json.dumps(q) for q in QUERIES])
def test_a_page_of_a_result_in_the_database_is_the_page_of_the_same_result_in_files(both, query):
    folder, in_database, _kept = both
    from_files = results.page_of(folder, expect_table=True, **query)
    from_database = results.page_of(in_database, expect_table=True, **query)
    assert from_database == from_files
    assert from_files["problems"] == {}


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_a_download_of_a_result_in_the_database_is_the_download_of_the_same_result_in_files(both, fmt):
    folder, in_database, _kept = both
    query = queries.TableQuery(filters=("score:ne:2",), sort=1, descending=True)
    assert b"".join(results.download(in_database, fmt, query)) == b"".join(results.download(folder, fmt, query))
    assert b"".join(results.download(in_database, fmt)) == b"".join(results.download(folder, fmt))


def test_the_zip_and_the_graphs_of_a_result_in_the_database_are_those_of_the_same_result_in_files(both):
    folder, in_database, _kept = both

    def members(source) -> dict[str, bytes]:
        target = io.BytesIO()
        assert results.write_archive(source, target, "table.csv", with_table=True) == 0
        with zipfile.ZipFile(target) as archive:
            return {name: archive.read(name) for name in archive.namelist()}

    assert members(in_database) == members(folder)
    assert results.graph_at(in_database, 0) == results.graph_at(folder, 0) == RESULT["graphs"][0]
    assert results.graph_at(in_database, 1) is None
    assert results.image_at(in_database, 0) is None


def test_keep_puts_a_result_with_images_or_past_the_limit_in_files(settings, tmp_path):
    png = tmp_path / "plot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    with_image = results.keep(
        next(_run_ids), {"text": "a picture"}, [{"path": str(png), "name": "plot.png", "type": "png"}]
    )
    assert with_image.in_database is None and with_image.folder
    assert results.image_at(with_image.folder, 0) == {"name": "plot.png", "file": "1.png", "type": "png"}

    settings.MLOPEN_RESULT_IN_DATABASE_KB = 1
    big = results.keep(next(_run_ids), dict(RESULT))
    assert big.in_database is None
    assert big.run_fields() == {"result_folder": big.folder, "result_rows": 120, "result_in_database": False}
    assert storage.exists(f"{big.folder}/{results.TABLE}")

    settings.MLOPEN_RESULT_IN_DATABASE_KB = 0
    small = results.keep(next(_run_ids), {"text": "tiny"})
    assert small.in_database is None and storage.exists(f"{small.folder}/{results.META}")
    for kept in (with_image, big, small):
        storage.delete_tree(kept.folder)


def test_a_text_only_result_in_the_database_has_no_table():
    kept = results.keep(next(_run_ids), {"text": "only words", "graphs": []})
    assert kept.run_fields() == {"result_folder": "", "result_rows": None, "result_in_database": True}
    assert kept.in_database.table is None
    page = results.page_of(results.InDatabase(kept.in_database.meta, None))
    assert (page["text"], page["columns"], page["data"], page["problems"]) == ("only words", None, None, {})


def test_tampered_or_missing_content_in_the_database_costs_its_part_never_the_page(both):
    _folder, in_database, _kept = both

    not_json = results.page_of(results.InDatabase("{not json", in_database.table), expect_table=True)
    assert not_json["problems"]["result"].startswith(results.UNREADABLE + "result.json is not valid JSON")

    garbage = results.InDatabase(in_database.meta, b"PAR1 this is not parquet")
    page = results.page_of(garbage, expect_table=True)
    assert page["text"] == "120 rows" and page["data"] is None
    assert page["problems"]["table"].startswith(results.UNREADABLE + "table.parquet is not a readable Parquet table")
    with pytest.raises(results.ResultUnreadable):
        results.download(garbage, "csv")

    gone = results.page_of(results.InDatabase(None), expect_table=True)
    assert gone["problems"] == {"result": results.UNREADABLE + "it is missing from the database."}

    no_table = results.page_of(results.InDatabase(in_database.meta, None), expect_table=True)
    assert no_table["problems"]["table"] == results.UNREADABLE + "its table is missing from the database."


def test_a_column_named_as_duckdbs_row_number_sorts_the_same_from_the_database_and_from_files():
    result = {"columns": ["file_row_number", "x"], "data": [[3, "c"], [1, "a"], [2, "b"]]}
    folder, _rows = results.store_result(next(_run_ids), result)
    kept = results.keep(next(_run_ids), result)
    in_database = results.InDatabase(kept.in_database.meta, kept.in_database.table)
    for query in ({}, {"sort": 0}, {"sort": 1, "descending": True}, {"filters": ["file_row_number:gt:1"]}):
        assert results.page_of(in_database, **query) == results.page_of(folder, **query)
    assert results.page_of(in_database, sort=0)["data"] == [[1, "a"], [2, "b"], [3, "c"]]
    storage.delete_tree(folder)


def test_a_bad_query_on_a_result_in_the_database_names_the_parameter(both):
    _folder, in_database, _kept = both
    with pytest.raises(queries.QueryInvalid) as raised:
        results.page_of(in_database, filters=["nope:eq:1"])
    assert raised.value.parameter == "filter"
