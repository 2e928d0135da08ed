"""The rest of the original's mlopenapp package, without Django: constants, data_handler,
params_handler, io_handler's upload helpers and the fork's plotter helpers."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from mlopen_runner.inputs import InputFile
from mlopenapp import constants
from mlopenapp.utils import data_handler, params_handler, plotter
from mlopenapp.utils import io_handler as io


def test_constants_name_the_originals_folders_relative_to_the_run_and_the_types_params_arrive_as():
    assert constants.CONTROL_DIR == "mlopenapp/pipelines"
    assert constants.FILE_DIRS["model"] == "mlopenapp/storage/models"
    assert set(constants.FILE_TYPES) == {"model", "arg", "pipeline", "graphs"}
    assert constants.PARAM_MAP["integer"] is int
    assert constants.PARAM_MAP["file"] is InputFile


def test_list_to_js_obj_names_each_item():
    assert data_handler.list_to_js_obj(["knn", "svm"]) == [{"name": "knn"}, {"name": "svm"}]


def test_params_handler_describes_the_form_and_leaves_out_what_is_malformed(capsys):
    form = params_handler.get_params_form({"k": ("integer", {"default": 5}), "data": "file", "bad": ("colour",)})

    assert form == {"k": {"type": "integer", "default": 5}, "data": {"type": "file"}}
    assert "unknown type 'colour'" in capsys.readouterr().err
    assert params_handler.field_params("float", {"blank": True}) == {"type": "float", "blank": True}


def test_get_pipeline_list_lists_the_control_files_of_the_code_folder(tmp_path, monkeypatch):
    (tmp_path / "mlopenapp" / "pipelines").mkdir(parents=True)
    for name in ("knn_control.py", "helpers.py", "yolo-control.py"):
        (tmp_path / "mlopenapp" / "pipelines" / name).write_text("")
    monkeypatch.chdir(tmp_path)

    assert io.get_pipeline_list() == ["knn_control", "yolo-control"]


def test_the_upload_helpers_refuse_since_a_runs_code_is_read_only():
    with pytest.raises(PermissionError, match="upload control and support files as a new version"):
        io.save_pipeline_file(InputFile(__file__))
    assert io.save_pipeline_files("knn_control.py", []) is True
    assert io.save_pipeline_files("knn_control.py", ["x.py"])[0] is False


def _figure_of(div: str) -> dict:
    call = re.search(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*", div)
    decoder = json.JSONDecoder()
    data, end = decoder.raw_decode(div, call.end())
    layout, _ = decoder.raw_decode(div, div.index("{", end))
    return {"data": data, "layout": layout}


def test_bar_returns_an_html_div_of_a_bar_chart():
    div = plotter.bar(pd.DataFrame({"class": ["a", "b"], "count": [3, 5]}), "class", "count")

    figure = _figure_of(div)
    assert div.startswith("<div")
    assert figure["data"][0]["type"] == "bar"
    assert list(figure["data"][0]["x"]) == ["a", "b"]


def test_detect_bbox_adds_one_outside_the_box_in_place():
    image = np.zeros((4, 5))

    returned = plotter.detect_bbox(image, 1, 1, 3, 2)

    assert returned is image
    assert image.tolist() == [
        [1, 1, 1, 1, 1],
        [1, 0, 0, 0, 1],
        [1, 0, 0, 0, 1],
        [1, 1, 1, 1, 1],
    ]


def test_collect_imgs_averages_each_classes_boxes_on_a_150_pixel_image():
    frames = [
        pd.DataFrame({"xmin": [0, 0], "ymin": [0, 0], "xmax": [149, 74], "ymax": [149, 149], "confidence": [1, 1]})
    ]

    heatmaps = plotter.collect_imgs(frames)["Heatmap"]

    assert len(heatmaps) == 1
    assert heatmaps[0].shape == (150, 150)
    assert heatmaps[0][0, 0] == 0.0  # inside both boxes
    assert heatmaps[0][0, 100] == 0.5  # outside one of the two


def test_custom_heatmap_returns_an_html_div_with_one_heatmap_per_class():
    frame = pd.DataFrame({"xmin": [10], "ymin": [10], "xmax": [50], "ymax": [60], "confidence": [0.9]})

    figure = _figure_of(plotter.custom_heatmap([frame, frame], ["cat", "dog"]))

    assert [trace["type"] for trace in figure["data"]] == ["heatmap", "heatmap"]
    assert [note["text"] for note in figure["layout"]["annotations"]] == ["cat", "dog"]
