"""What run_pipeline returns, normalized to the contract's JSON (in-process: results.py is pure)."""

from __future__ import annotations

import datetime
import json
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.offline
import pytest

from mlopen_runner.results import dumps_strict, normalize_result


def test_a_non_dict_return_is_rejected_naming_its_type():
    with pytest.raises(TypeError, match="it returned tuple$"):
        normalize_result(("data",))


def test_an_empty_dict_gives_an_empty_result():
    assert normalize_result({}) == {
        "columns": None,
        "data": None,
        "graphs": [],
        "images": [],
        "text": None,
        "warnings": [],
    }


def test_numpy_pandas_and_datetime_cells_become_json_scalars():
    row = [
        np.int64(3),
        np.float64("nan"),
        np.bool_(True),
        np.str_("a"),
        pd.Timestamp("2024-05-01 10:00"),
        datetime.date(2024, 5, 1),
        pd.NA,
        pd.NaT,
        float("inf"),
        object.__new__(type("Thing", (), {})),
    ]

    cells = normalize_result({"data": [row]})["data"][0]

    assert cells[:9] == [3, None, True, "a", "2024-05-01T10:00:00", "2024-05-01", None, None, "inf"]
    assert cells[9].startswith("<") and "Thing object" in cells[9]
    dumps_strict(cells)  # would raise on NaN or Infinity


def test_plain_cells_and_their_subclasses_come_out_as_the_general_path_makes_them():
    # Plain str, int, bool, None and float take a shortcut; a subclass of one still goes the long
    # way (numpy's float64 is a float, an IntEnum an int), and both ways agree.
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    class Name(str):
        pass

    row = [
        "a",
        7,
        True,
        None,
        1.5,
        float("nan"),
        float("-inf"),
        np.float64(2.5),
        np.float64("nan"),
        Level.HIGH,
        Name("b"),
    ]

    cells = normalize_result({"data": [row]})["data"][0]

    assert cells == ["a", 7, True, None, 1.5, None, "-inf", 2.5, None, 3, "b"]
    assert [type(cell) for cell in cells[:5]] == [str, int, bool, type(None), float]
    assert type(cells[7]) is float and cells[9] is Level.HIGH
    assert dumps_strict(cells) == '["a",7,true,null,1.5,null,"-inf",2.5,null,3,"b"]'


def test_a_data_frame_as_data_brings_its_columns_unless_columns_are_given():
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})

    assert normalize_result({"data": frame})["columns"] == ["a", "b"]
    assert normalize_result({"data": frame, "columns": ["A", "B"]})["columns"] == ["A", "B"]
    assert normalize_result({"data": frame})["data"] == [[1, "x"], [2, "y"]]


def test_rows_given_as_dicts_take_their_columns_from_the_keys():
    result = normalize_result({"data": [{"a": 1, "b": 2}, {"b": 4, "a": 3}]})

    assert result["columns"] == ["a", "b"]
    assert result["data"] == [[1, 2], [3, 4]]


def test_a_numpy_matrix_as_data_becomes_rows():
    assert normalize_result({"data": np.arange(4).reshape(2, 2)})["data"] == [[0, 1], [2, 3]]


def test_a_row_that_is_not_a_sequence_is_an_error_naming_the_row():
    with pytest.raises(TypeError, match="data row 1 is a int"):
        normalize_result({"data": [[1], 2]})


def test_an_html_div_from_plotly_offline_becomes_a_figure():
    div = plotly.offline.plot(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])), output_type="div", include_plotlyjs=False)

    (graph,) = normalize_result({"graphs": div})["graphs"]

    assert graph["kind"] == "figure"
    assert graph["figure"]["data"] == [{"type": "scatter", "x": [1, 2], "y": [3, 4]}]
    assert "template" in graph["figure"]["layout"]


def test_html_that_cannot_be_parsed_is_kept_as_html():
    broken = '<div><script>Plotly.newPlot("id", [{"x": [1,</script></div>'

    graphs = normalize_result({"graphs": [broken, "<p>no plot</p>"]})["graphs"]

    assert graphs == [{"kind": "html", "html": broken}, {"kind": "html", "html": "<p>no plot</p>"}]


def test_a_figure_dict_with_numpy_arrays_becomes_plain_lists():
    figure = {"data": [{"type": "heatmap", "z": np.array([[1.0, np.nan], [3.0, 4.0]])}], "layout": {"title": "t"}}

    (graph,) = normalize_result({"graphs": [figure]})["graphs"]

    assert graph == {
        "kind": "figure",
        "figure": {"data": [{"type": "heatmap", "z": [[1.0, None], [3.0, 4.0]]}], "layout": {"title": "t"}},
    }


def test_a_plotly_figure_object_becomes_a_figure_with_decoded_arrays():
    figure = go.Figure(go.Heatmap(z=np.array([[1, 2], [3, 4]], dtype=np.int16)))

    (graph,) = normalize_result({"graphs": figure})["graphs"]

    assert graph["figure"]["data"][0]["z"] == [[1, 2], [3, 4]]


def test_none_graphs_are_skipped():
    assert normalize_result({"graphs": None})["graphs"] == []
    assert normalize_result({"graphs": [None, {"data": []}]})["graphs"] == [
        {"kind": "figure", "figure": {"data": [], "layout": {}}}
    ]


@pytest.mark.parametrize(
    "graph, described", [(42, "graph 1 is a int"), ({"layout": {}}, "graph 1 (dict) has no 'data'")]
)
def test_a_graph_of_an_unknown_form_is_an_error_naming_its_index_and_type(graph, described):
    with pytest.raises(TypeError, match=re.escape(described)):
        normalize_result({"graphs": [{"data": []}, graph]})


def test_text_stays_as_given_and_other_scalars_become_strings():
    assert normalize_result({"text": "<b>bold</b>"})["text"] == "<b>bold</b>"
    assert normalize_result({"text": np.float64(0.5)})["text"] == "0.5"


def test_unknown_keys_are_warned_about_not_refused():
    result = normalize_result({"data": [], "preds": 1})

    assert result["warnings"] == [
        "run_pipeline returned an unknown key 'preds'; only data, columns, graphs, text, imgs, images are shown"
    ]


def test_the_normalized_result_is_strict_json():
    result = normalize_result({"data": [[np.nan]], "graphs": [{"data": [{"y": [float("nan")]}]}]})

    assert json.loads(dumps_strict(result))["data"] == [[None]]
