"""Storing a normalized run result and reading it back a page at a time (mlopen.runs.results)."""

from __future__ import annotations

import itertools

import pytest

_run_ids = itertools.count(9_000_001)  # result folders of their own, apart from real runs' results


@pytest.fixture
def stored():
    from mlopen.runs import results

    def store(columns, data):
        folder, rows = results.store_result(
            next(_run_ids), {"columns": columns, "data": data, "graphs": [], "text": None, "warnings": []}
        )
        return results, folder, rows

    return store


def test_data_wider_than_its_column_names_gets_generated_names_for_the_extra_columns(stored):
    results, folder, rows = stored(["name"], [["ada", 3], ["grace", 5]])

    page = results.page_of(folder)

    assert rows == 2
    assert page["columns"] == ["name", "column 2"]
    assert page["data"] == [["ada", 3], ["grace", 5]]
    assert list(results.iter_csv(folder)) == ["name,column 2\r\n", "ada,3\r\n", "grace,5\r\n"]


def test_repeated_column_names_are_shown_as_given(stored):
    results, folder, _ = stored(["x", "x"], [[1, 2]])

    assert results.page_of(folder)["columns"] == ["x", "x"]


@pytest.mark.parametrize("columns", [None, ["name"]])
def test_an_empty_table_has_no_rows_on_any_page(stored, columns):
    results, folder, rows = stored(columns, [])

    page = results.page_of(folder)

    assert (rows, page["rows"], page["data"]) == (0, 0, [])
    assert results.as_json_rows(folder)["data"] == []


def test_a_page_past_the_end_of_the_table_is_empty(stored):
    results, folder, _ = stored(["n"], [[i] for i in range(5)])

    assert results.page_of(folder, page=2, page_size=3)["data"] == [[3], [4]]
    assert results.page_of(folder, page=3, page_size=3)["data"] == []


def test_a_huge_text_result_is_cut_with_a_warning(stored, settings):
    from mlopen.runs import results

    settings.MLOPEN_MAX_TEXT_KB = 1
    folder, _rows = results.store_result(
        next(_run_ids),
        {"columns": None, "data": None, "graphs": [], "text": "<p>" + "z" * 5000 + "</p>", "warnings": []},
    )

    page = results.page_of(folder)

    assert len(page["text"]) == 1024
    assert page["warnings"] == [
        "The text result has 5,007 characters; only the first 1,024 are kept "
        "(MLOPEN_MAX_TEXT_KB). Return long output as a table instead."
    ]
