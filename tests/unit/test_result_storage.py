"""Storing a normalized run result and reading it back a page at a time (mlopen.runs.results)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

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
    assert "".join(results.iter_csv(folder)) == "name,column 2\r\nada,3\r\ngrace,5\r\n"


def test_repeated_column_names_are_shown_as_given(stored):
    results, folder, _ = stored(["x", "x"], [[1, 2]])

    assert results.page_of(folder)["columns"] == ["x", "x"]


@pytest.mark.parametrize("columns", [None, ["name"]])
def test_an_empty_table_has_no_rows_on_any_page(stored, columns):
    results, folder, rows = stored(columns, [])

    page = results.page_of(folder)

    assert (rows, page["rows"], page["data"]) == (0, 0, [])
    assert json.loads(b"".join(results.download(folder, "json")))["data"] == []


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


TINY_PNG = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "tiny.png"
EMPTY_RESULT = {"columns": None, "data": None, "graphs": [], "text": None, "warnings": []}


def test_images_are_stored_with_the_result_each_under_a_name_of_its_own(tmp_path):
    from mlopen.core import storage
    from mlopen.runs import results

    svg = tmp_path / "chart.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    images = [
        {"path": str(TINY_PNG), "name": "plot.png", "type": "png"},
        {"path": str(TINY_PNG), "name": "PLOT.png", "type": "png"},
        {"path": str(svg), "name": "chart.svg", "type": "svg"},
    ]

    folder, _rows = results.store_result(next(_run_ids), EMPTY_RESULT, images)

    page = results.page_of(folder)
    assert page["images"] == [
        {"name": "plot.png", "file": "1.png", "type": "png"},
        {"name": "PLOT (2).png", "file": "2.png", "type": "png"},
        {"name": "chart.svg", "file": "3.svg", "type": "svg"},
    ]
    assert page["problems"] == {}
    with storage.open_stored(f"{folder}/images/1.png") as stored_file:
        assert stored_file.read() == TINY_PNG.read_bytes()
    assert results.image_at(folder, 2)["type"] == "svg"
    assert results.image_at(folder, 3) is None


def test_a_stored_image_entry_that_is_not_ours_is_a_problem_and_never_opened():
    import json

    from mlopen.core import storage
    from mlopen.runs import results

    folder, _rows = results.store_result(next(_run_ids), EMPTY_RESULT, [])
    meta = json.loads(storage.open_stored(f"{folder}/{results.META}").read())
    meta["images"] = [
        {"name": "a.png", "file": "../../secret_key", "type": "png"},
        {"name": "b.png", "file": "1.svg", "type": "png"},
        "c.png",
    ]
    storage.delete_file(f"{folder}/{results.META}")
    storage.write_stream(f"{folder}/{results.META}", [json.dumps(meta).encode()])

    page = results.page_of(folder)

    assert page["images"] == [None, None, None]
    assert page["problems"] == {
        "images.0": "This result could not be shown: image 1 names no stored file.",
        "images.1": "This result could not be shown: image 2 names a file of another type.",
        "images.2": "This result could not be shown: image 3 is not an object.",
    }
    assert results.image_at(folder, 0) is None


@pytest.mark.parametrize(
    "values",
    [
        [1, 2, 3],
        [1, 2.5, None],
        [1, float("nan")],
        [float("nan"), float("nan")],
        [1.5, float("nan"), None],
        [True, float("nan")],
        ["a", float("nan")],
        [None, None],
        [float("inf"), 1.0],
        ["a", "b", None],
        [[1, 2], [3]],
        [{"k": 1}, None],
    ],
    ids=repr,
)
def test_a_column_is_stored_as_arrow_with_nan_as_missing_as_from_pandas_does(values):
    # NaN makes pyarrow's slower from_pandas conversion worth asking for; without one the plain
    # conversion gives the same array.
    import pyarrow as pa

    from mlopen.runs import results

    stored = results._arrow_table(["c"], [[value] for value in values]).column("c").combine_chunks()

    assert stored.equals(pa.array(values, from_pandas=True))


def test_a_column_mixing_numbers_and_text_is_stored_as_text_with_or_without_nan():
    from mlopen.runs import results

    table = results._arrow_table(["a", "b"], [[1, 1], ["x", float("nan")], [None, "y"]])

    assert table.column("a").to_pylist() == ["1", "x", None]
    assert table.column("b").to_pylist() == ["1", "nan", "y"]
