"""The legacy mlopenapp import paths: plotter helpers and the io_handler SDK."""

from __future__ import annotations

import numpy as np

from mlopen_runner import Job
from mlopen_runner.results import normalize_result
from mlopen_runner.sandbox import sandbox_status
from mlopenapp.utils import io_handler as io
from mlopenapp.utils import plotter


def test_pie_plot_from_lists_returns_an_html_div_that_reads_back_as_a_pie():
    div = plotter.pie_plot_from_lists(labels=["yes", "no"], values=[3, 1], title="Votes")

    figure = normalize_result({"graphs": div})["graphs"][0]["figure"]
    assert div.startswith("<div")
    assert figure["data"][0]["type"] == "pie" and figure["data"][0]["labels"] == ["yes", "no"]
    assert figure["layout"]["title"]["text"] == "Votes"


def test_plotlify_pie_js_takes_a_dict_or_label_value_pairs():
    from_dict = plotter.plotlify_pie_js({"a": np.int64(2), 3: 1}, "Share")
    from_pairs = plotter.plotlify_pie_js([("a", 2), (3, 1)], "Share")

    assert (
        from_dict
        == from_pairs
        == {"data": [{"type": "pie", "labels": ["a", "3"], "values": [2, 1]}], "layout": {"title": {"text": "Share"}}}
    )


def test_plotlify_scatter_js_plots_x_against_y_with_axis_titles():
    figure = plotter.plotlify_scatter_js(x=np.arange(3), y=[4, 5, 6], xtag="epoch", ytag="loss", description="Fit")

    assert figure == {
        "data": [{"type": "scatter", "x": [0, 1, 2], "y": [4, 5, 6]}],
        "layout": {
            "title": {"text": "Fit"},
            "xaxis": {"title": {"text": "epoch"}},
            "yaxis": {"title": {"text": "loss"}},
        },
    }


def test_plotlify_scatter_js_draws_xy_as_the_original_did_values_across_labels_up():
    figure = plotter.plotlify_scatter_js({"cat": 3, "dog": 5})

    assert figure["data"] == [{"type": "scatter", "x": [3, 5], "y": ["cat", "dog"]}]


def test_sdk_calls_outside_a_run_do_nothing_and_print_nothing(capsys):
    io.progress(0.5, "half")
    io.progress("not a number")
    io.log_metric("loss", "not a number")

    assert capsys.readouterr() == ("", "")


def test_a_job_round_trips_through_json():
    job = Job(
        kind="run", control_path="/p/c.py", work_dir="/w", params={"k": 5}, memory_mb=512, readonly_paths=["/data"]
    )

    assert Job.from_json(job.to_json()) == job


def test_sandbox_status_names_a_kind_and_a_reason():
    status = sandbox_status()

    assert status["kind"] in ("bubblewrap", "process") and status["reason"]
