"""Legacy control files, run through real child processes, behave as the original mlopen promised."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from mlopen_runner.watching import private_model_path


def test_train_saves_models_and_run_receives_them(write_pipeline, run_job):
    control = write_pipeline("""
        import os
        from mlopenapp.utils import io_handler as io

        class Doubler:
            def predict(self, value):
                return value * 2

        def train(inpt, params=None):
            # The original loaded each saved model in turn: run_pipeline gets the last one.
            io.save_pipeline([("first model", "unused"), (Doubler(), "doubler")],
                             [({"unit": "kg"}, "settings")], os.path.basename(__file__))

        def run_pipeline(input, model, args, params=None):
            return {"data": [[model.predict(21), args["settings"]["unit"]]], "columns": ["value", "unit"]}
        """)

    trained = run_job("train", control)
    ran = run_job("run", control, model_path=trained.outcome.model_path)

    assert trained.outcome.status == "succeeded"
    # The worker keeps its own copy beside (not in) the folder the pipeline could write.
    assert trained.outcome.model_path == private_model_path(trained.job.work_dir)
    assert ran.outcome.status == "succeeded", ran.log
    assert ran.outcome.result["data"] == [[42, "kg"]]
    assert ran.outcome.result["columns"] == ["value", "unit"]


def test_model_file_holds_named_models_args_and_label_from_the_last_save(write_pipeline, run_job):
    control = write_pipeline("""
        from mlopenapp.utils import io_handler as io

        def train(inpt, params=None):
            io.save_pipeline([("first", "model")], [], "control.py")
            io.save_pipeline([("second", "model")], [(3, "k")], "control.py")

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    trained = run_job("train", control)

    saved = pickle.loads(Path(trained.outcome.model_path).read_bytes())
    # Each object is pickled on its own, when it is saved (mlopen_runner.sdk).
    assert saved == {
        "format": 2,
        "label": "control.py",
        "models": [("model", pickle.dumps("second", protocol=pickle.HIGHEST_PROTOCOL))],
        "args": [("k", pickle.dumps(3, protocol=pickle.HIGHEST_PROTOCOL))],
        "objects": [],
    }


def test_the_names_of_what_train_saved_reach_the_parent_without_unpickling(write_pipeline, run_job):
    control = write_pipeline("""
        from mlopenapp.utils import io_handler as io

        def train(inpt, params=None):
            io.save_pipeline([(object(), "knn"), (object(), "scaler")], [({"k": 3}, "settings")], "iris")

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    trained = run_job("train", control)

    assert trained.outcome.model_manifest == {"label": "iris", "models": ["knn", "scaler"], "args": ["settings"]}
    assert json.loads(Path(trained.job.work_dir, "model.json").read_text()) == trained.outcome.model_manifest


def test_a_model_manifest_the_pipeline_overwrote_with_garbage_is_ignored_but_the_model_kept(write_pipeline, run_job):
    control = write_pipeline("""
        import atexit
        from mlopenapp.utils import io_handler as io

        def train(inpt, params=None):
            io.save_pipeline([(1, "one")], [], "x")
            # Runs after the runner wrote model.json, as hostile code could.
            atexit.register(lambda: open("model.json", "w").write('{"models": [{"evil": 1}]}'))

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    trained = run_job("train", control)

    assert trained.outcome.status == "succeeded", trained.log
    assert trained.outcome.model_path is not None
    assert trained.outcome.model_manifest is None


def test_run_without_a_trained_model_receives_none_and_empty_args(write_pipeline, run_job):
    control = write_pipeline("""
        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            return {"text": f"{model!r} {args!r} {input!r} {params!r}"}
        """)

    ran = run_job("run", control)

    assert ran.outcome.result["text"] == "None {} None {}"


def test_train_that_saves_nothing_succeeds_without_a_model(write_pipeline, run_job):
    control = write_pipeline("""
        def train(inpt, params=None):
            print("this pipeline needs no training")

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    trained = run_job("train", control)

    assert trained.outcome.status == "succeeded"
    assert trained.outcome.model_path is None


def test_train_declaring_only_the_input_is_called_with_the_input_alone(write_pipeline, run_job, data_file):
    control = write_pipeline("""
        def train(inpt):
            print("got", inpt.name)

        def run_pipeline(input, model, args):
            return {"text": input.name}
        """)

    trained = run_job("train", control, input=data_file("a\n"))
    ran = run_job("run", control, input=data_file("a\n"))

    assert "got datasets/data.csv" in trained.log
    assert ran.outcome.result["text"] == "datasets/data.csv"


def test_params_reach_the_pipeline_and_file_params_arrive_as_input_files(write_pipeline, run_job, data_file):
    control = write_pipeline("""
        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            params["words"].open("r")
            return {"text": f"{params['k']} {params['words'].name} {params['words'].read().strip()}"}
        """)
    words = data_file("apple\n", "words.txt")

    ran = run_job("run", control, params={"k": 5}, files={"words": words})

    assert ran.outcome.result["text"] == "5 datasets/words.txt apple"


def test_a_param_value_shaped_like_a_file_stays_a_plain_value(write_pipeline, run_job, tmp_path, requires_bubblewrap):
    # Only Job.files (made by the platform from datasets) become files; a value from anywhere
    # else is data, never a path the sandbox mounts or the pipeline gets opened for it.
    secret = tmp_path / "host-secret.txt"
    secret.write_text("secret")
    control = write_pipeline(f"""
        import os

        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            return {{"text": f"{{type(params['words']).__name__}} {{os.path.exists({str(secret)!r})}}"}}
        """)
    marker = {"__mlopen_file__": {"path": str(secret), "name": "x"}}

    ran = run_job("run", control, params={"words": marker})

    assert ran.outcome.result["text"] == "dict False", ran.log


def test_support_files_beside_the_control_file_import_and_open(write_pipeline, run_job):
    control = write_pipeline(
        """
        import os
        import helpers

        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            with open(os.path.join(os.path.dirname(__file__), "vocab.txt")) as vocab:
                return {"text": helpers.shout(vocab.read().strip())}
        """,
        files={"helpers.py": "def shout(word):\n    return word.upper()\n", "vocab.txt": "hello\n"},
    )

    ran = run_job("run", control)

    assert ran.outcome.result["text"] == "HELLO", ran.log


def test_input_file_supports_what_legacy_pipelines_do_with_it(write_pipeline, run_job, data_file):
    control = write_pipeline("""
        import pandas as pd

        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            unopened = pd.read_csv(input)
            input.open("r")
            lines = [line for line in input]
            input.open("r")
            opened = pd.read_csv(input, names=["x", "y"], skiprows=1)
            input.open("r")
            all_lines = input.readlines()
            input.open("r")
            return {"data": [[unopened["a"].sum(), len(lines), opened["y"].sum(), len(all_lines), input.read()]]}
        """)

    ran = run_job("run", control, input=data_file("a,b\n1,2\n3,4\n"))

    assert ran.outcome.result["data"] == [[4, 3, 6, 3, "a,b\n1,2\n3,4\n"]], ran.log


def test_params_kind_reads_every_legacy_form_of_get_params(write_pipeline, run_job):
    control = write_pipeline("""
        def get_params(run=True):
            if not run:
                return {"samples": ("upload"), "epochs": ("integer", {"default": 3, "blank": True})}
            return {
                "k": ("integer", {"default": 5}),
                "data": ("file"),
                "column_names": "string",
                "ratio": ["float", {"default": 0.5}],
                "metric": ("choice", {"choices": ["euclid", "cosine"], "default": "cosine"}),
                "scale": ("bool",),
            }

        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    ran = run_job("params", control)

    assert ran.outcome.status == "succeeded", ran.log
    assert ran.outcome.params == {
        "train": {"samples": {"type": "upload"}, "epochs": {"type": "integer", "default": 3, "blank": True}},
        "run": {
            "k": {"type": "integer", "default": 5},
            "data": {"type": "file"},
            "column_names": {"type": "string"},
            "ratio": {"type": "float", "default": 0.5},
            "metric": {"type": "choice", "choices": ["euclid", "cosine"], "default": "cosine"},
            "scale": {"type": "bool"},
        },
    }


@pytest.mark.parametrize(
    "definition",
    [
        "def get_params(run=True):\n    return ''",
        "def get_params(run=True):\n    return None",
        "def get_params():\n    return {}",
        "",  # no get_params at all
    ],
)
def test_params_kind_gives_empty_forms_when_the_pipeline_has_no_parameters(write_pipeline, run_job, definition):
    control = write_pipeline(
        definition + "\ndef train(inpt, params=None):\n    pass\n"
        "def run_pipeline(input, model, args, params=None):\n    return {}\n"
    )

    ran = run_job("params", control)

    assert ran.outcome.params == {"train": {}, "run": {}}


@pytest.mark.parametrize(
    "entry, expected_error",
    [
        ('("colour")', "ValueError: parameter 'shade' has unknown type 'colour'"),
        ('("integer", {"defualt": 3})', "ValueError: parameter 'shade': options must be a dict with any of"),
        ('("choice", {"default": "red"})', "ValueError: parameter 'shade' is a choice but gives no list of choices"),
        ("42", "ValueError: parameter 'shade': expected a type name or a (type, options) tuple, got 42"),
    ],
)
def test_params_kind_fails_naming_the_parameter_that_is_malformed(write_pipeline, run_job, entry, expected_error):
    control = write_pipeline(
        f"def get_params(run=True):\n    return {{'shade': {entry}}}\n"
        "def train(inpt, params=None):\n    pass\n"
        "def run_pipeline(input, model, args, params=None):\n    return {}\n"
    )

    ran = run_job("params", control)

    assert ran.outcome.status == "failed"
    assert ran.outcome.error.startswith(expected_error)


def test_plotly_graphs_in_every_form_become_figures(write_pipeline, run_job):
    control = write_pipeline("""
        import numpy as np
        import plotly.graph_objects as go
        import plotly.offline
        from mlopenapp.utils import plotter

        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            figure = go.Figure(go.Bar(x=np.array([1, 2]), y=np.array([3.5, 4.5])))
            div = plotly.offline.plot(figure, output_type="div", include_plotlyjs=False)
            as_dict = {"data": [{"type": "scatter", "x": np.arange(3), "y": np.array([0.5, np.nan, 2.0])}]}
            pie = plotter.pie_plot_from_lists(labels=["yes", "no"], values=[3, 1], title="Votes")
            return {"graphs": [div, as_dict, figure, pie, None]}
        """)

    ran = run_job("run", control)

    graphs = ran.outcome.result["graphs"]
    assert ran.outcome.status == "succeeded", ran.log
    assert [graph["kind"] for graph in graphs] == ["figure"] * 4
    div_trace, dict_trace, figure_trace, pie_trace = (graph["figure"]["data"][0] for graph in graphs)
    assert (div_trace["type"], div_trace["x"], div_trace["y"]) == ("bar", [1, 2], [3.5, 4.5])
    assert dict_trace == {"type": "scatter", "x": [0, 1, 2], "y": [0.5, None, 2.0]}
    assert (figure_trace["type"], figure_trace["x"], figure_trace["y"]) == ("bar", [1, 2], [3.5, 4.5])
    assert (pie_trace["type"], pie_trace["labels"], pie_trace["values"]) == ("pie", ["yes", "no"], [3, 1])


def test_numpy_and_pandas_cells_come_back_as_plain_json(write_pipeline, run_job):
    control = write_pipeline("""
        import numpy as np
        import pandas as pd

        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            frame = pd.DataFrame({"n": [np.int64(1), np.int64(2)], "x": [np.float32(0.5), np.nan],
                                  "when": pd.to_datetime(["2024-01-02", None]), "label": ["a", pd.NA]})
            return {"data": frame}
        """)

    ran = run_job("run", control)

    result_text = Path(ran.job.work_dir, "result.json").read_text()
    assert "NaN" not in result_text
    assert ran.outcome.result["columns"] == ["n", "x", "when", "label"]
    assert ran.outcome.result["data"] == [[1, 0.5, "2024-01-02T00:00:00", "a"], [2, None, None, None]]


def test_returning_something_other_than_a_dict_fails_naming_what_was_returned(write_pipeline, run_job):
    control = write_pipeline("""
        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            return [1, 2, 3]
        """)

    ran = run_job("run", control)

    assert ran.outcome.status == "failed"
    assert ran.outcome.error == (
        "TypeError: run_pipeline must return a dict with any of data, columns, graphs, text; it returned list"
    )


def test_a_raising_pipeline_fails_with_its_exception_type_and_message(write_pipeline, run_job):
    control = write_pipeline("""
        def train(inpt, params=None):
            raise ValueError("bad column")

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    ran = run_job("train", control)

    error = json.loads(Path(ran.job.work_dir, "error.json").read_text())
    assert ran.outcome.status == "failed"
    assert ran.outcome.exit_code == 1
    assert ran.outcome.error == "ValueError: bad column"
    assert error["type"] == "ValueError" and error["message"] == "bad column"
    assert 'raise ValueError("bad column")' in error["traceback"]
    assert "Traceback (most recent call last)" in ran.log


def test_a_control_file_without_run_pipeline_fails_saying_so(write_pipeline, run_job):
    control = write_pipeline("def train(inpt, params=None):\n    pass\n")

    ran = run_job("run", control)

    assert ran.outcome.error == "AttributeError: the control file defines no run_pipeline() function"


def test_sys_exit_in_a_pipeline_is_a_failure(write_pipeline, run_job):
    control = write_pipeline("""
        import sys

        def train(inpt, params=None):
            sys.exit(3)

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    ran = run_job("train", control)

    assert ran.outcome.status == "failed"
    assert ran.outcome.error == "SystemExit: pipeline called exit(3)"


def test_progress_and_metric_events_reach_the_callbacks(write_pipeline, run_job):
    control = write_pipeline("""
        from mlopenapp.utils import io_handler as io

        def train(inpt, params=None):
            io.progress(0.5, "half way")
            io.progress(7)
            io.log_metric("loss", 0.25, step=1)
            io.log_metric("loss", float("nan"))

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    ran = run_job("train", control)

    assert ran.recorder.events == [
        {"type": "progress", "fraction": 0.5, "message": "half way"},
        {"type": "progress", "fraction": 1.0, "message": None},
        {"type": "metric", "name": "loss", "value": 0.25, "step": 1},
        {"type": "metric", "name": "loss", "value": None, "step": None},
    ]


def test_stdout_and_stderr_are_both_captured_in_order(write_pipeline, run_job):
    control = write_pipeline("""
        import sys

        def train(inpt, params=None):
            print("to stdout")
            print("to stderr", file=sys.stderr)
            print("stdout again")

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    ran = run_job("train", control)

    assert ran.log == "to stdout\nto stderr\nstdout again\n"


def test_unknown_return_keys_become_warnings_not_errors(write_pipeline, run_job):
    control = write_pipeline("""
        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            return {"text": 3.5, "preds": []}
        """)

    ran = run_job("run", control)

    assert ran.outcome.status == "succeeded"
    assert ran.outcome.result["text"] == "3.5"
    assert ran.outcome.result["warnings"] == [
        "run_pipeline returned an unknown key 'preds'; only data, columns, graphs, text, imgs, images are shown"
    ]


def test_evaluate_params_returns_the_train_and_run_forms(write_pipeline, tmp_path):
    from mlopen_runner import evaluate_params

    control = write_pipeline("""
        def get_params(run=True):
            return {"k": ("integer", {"default": 5})} if run else ""

        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    outcome = evaluate_params(control, str(tmp_path / "forms"))

    assert outcome.status == "succeeded"
    assert outcome.params == {"train": {}, "run": {"k": {"type": "integer", "default": 5}}}
