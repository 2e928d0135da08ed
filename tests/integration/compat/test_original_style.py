"""Pipelines written the way the original mlopen's were (our own, in its style), uploaded and run
through the REST API by a real worker: the mlopenapp.pipelines namespace, the original working
folder, io.save/io.load across a train and its runs, and a bare file parameter left out.

One worker serves the module (``module_worker``); its runs go to a warm process (MLOPEN_WARM_RUNS),
and the second run of a trained model reuses the first one's. Cold runs of the same pipelines are
tests/unit/runner/test_legacy_namespace.py.
"""

from __future__ import annotations

import textwrap

import pytest

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

IRIS = b"5.1,3.5,1.4,0.2,Iris-setosa\n4.9,3.0,1.4,0.2,Iris-setosa\n7.0,3.2,4.7,1.4,Iris-versicolor\n"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def finished(api, wait_for_run):
    """Wait for a run to end with ``status``; return GET /api/v1/runs/<id>/."""

    def wait(run, status="succeeded"):
        wait_for_run(run["id"], timeout=90)
        body = api.get(f"/api/v1/runs/{run['id']}/").json()
        if body["status"] != status:
            log = api.get(f"/api/v1/runs/{run['id']}/logs/").content.decode()
            pytest.fail(f"run {run['id']} {body['status']} (wanted {status}): {body['error']}\n{log[-3000:]}")
        return body

    return wait


SENTIMENT_STYLE = """
    import os

    from mlopenapp.pipelines import text_cleaning as tcl
    import mlopenapp.pipelines.text_cleaning
    from mlopenapp.pipelines.textnet.model import WordCounter
    from mlopenapp.utils import io_handler as io
    from mlopenapp.utils import plotter, data_handler


    def train(inpt, params=None):
        inpt.open("r")
        words = tcl.clean(inpt.read())
        vocabulary = open(os.path.join(os.path.dirname(__file__), "textnet", "vocab.txt")).read().split()
        io.save(vocabulary, "vocabulary", type="arg")
        io.save_pipeline([("not the last model", "draft"), (WordCounter(words), "counter")],
                         [(len(words), "trained_on")], os.path.basename(__file__))


    def run_pipeline(input, model, args, params=None):
        from mlopenapp.pipelines.textnet import model as textnet_model

        input.open("r")
        words = tcl.clean(input.read())
        return {
            "columns": ["what", "value"],
            "data": [
                ["model class", f"{type(model).__module__}.{type(model).__name__}"],
                ["same class", str(type(model) is textnet_model.WordCounter)],
                ["known words", str(model.known(words))],
                ["trained on", str(args["trained_on"])],
                ["vocabulary", ",".join(io.load("vocabulary.pkl", "arg"))],
                ["modules", str(mlopenapp.pipelines.text_cleaning is tcl)],
                ["listed", str(data_handler.list_to_js_obj(["a"]))],
            ],
        }
    """

SUPPORT = {
    "text_cleaning.py": textwrap.dedent("""
        def clean(text):
            return [word.strip(".,!").lower() for word in text.split() if word.strip(".,!")]
        """),
}

SUBPACKAGE = {
    "textnet/__init__.py": "",
    "textnet/model.py": textwrap.dedent("""
        class WordCounter:
            def __init__(self, words):
                self.words = set(words)

            def known(self, words):
                return sum(word in self.words for word in words)
        """),
    "textnet/vocab.txt": "good bad\n",
}


def test_a_model_class_from_a_support_subpackage_trains_and_loads_in_every_later_run(
    pipeline_from, upload_dataset, submit, finished, module_worker
):
    # Uploaded as the original's folder was: the subpackage keeps its paths.
    pipeline_from("sentiment_style", SENTIMENT_STYLE, files={**SUPPORT, **SUBPACKAGE})
    reviews = upload_dataset("reviews.txt", b"A good film. A good cast!")["id"]
    new = upload_dataset("new.txt", b"good, bad and good")["id"]

    finished(submit("sentiment_style", kind="train", input=reviews))
    first = finished(submit("sentiment_style", input=new))
    second = finished(submit("sentiment_style", input=new))  # the same warm process, model unpickled afresh

    expected = [
        ["model class", "mlopenapp.pipelines.textnet.model.WordCounter"],
        ["same class", "True"],
        ["known words", "2"],
        ["trained on", "6"],
        ["vocabulary", "good,bad"],
        ["modules", "True"],
        ["listed", "[{'name': 'a'}]"],
    ]
    assert first["result"]["data"] == expected
    assert second["result"]["data"] == expected


KNN_STYLE = """
    import os
    import pandas as pd

    from mlopenapp.utils import io_handler as io


    def get_params(run=True):
        if run:
            return {"k": ("integer", {"default": 5}), "data": ("file"), "column_names": ("string")}
        return ""


    def train(inpt, params):
        raise Exception("no separate training phase")


    def run_pipeline(input, model, args, params=None):
        names = params["column_names"].split(",") if params["column_names"] else ["a", "b", "c", "d", "Class"]
        dataset = pd.read_csv(os.path.join("mlopenapp/data/user_data/", str(input)), names=names)
        with open("mlopenapp/static/images/classes.txt", "w") as image:
            image.write("written where the original wrote images")
        return {
            "columns": ["what", "value"],
            "data": [
                ["rows", len(dataset)],
                ["classes", ",".join(sorted(set(dataset["Class"])))],
                ["data", repr(params["data"])],
                ["k", params["k"]],
                ["input", f"{input} {len(input)} {input.url}"],
                ["code folder", ",".join(sorted(os.listdir("mlopenapp/pipelines")))],
            ],
        }
    """


def test_a_knn_style_pipeline_runs_without_its_bare_file_parameter_and_reads_the_originals_paths(
    pipeline_from, upload_dataset, submit, finished, module_worker
):
    pipeline_from("knn_style_control", KNN_STYLE)
    iris = upload_dataset("iris.csv", IRIS)["id"]

    body = finished(submit("knn_style_control", input=iris, params={"column_names": ""}))

    assert dict(body["result"]["data"]) == {
        "rows": "3",
        "classes": "Iris-setosa,Iris-versicolor",
        "data": "None",
        "k": "5",
        "input": f"iris.csv {len(IRIS)} /user_data/iris.csv",
        "code folder": "knn_style_control.py",
    }
    assert body["params"]["data"] is None


def test_a_train_that_raises_stores_no_model_even_after_io_save(pipeline_from, submit, finished, api, module_worker):
    pipeline = pipeline_from(
        "saves_then_fails",
        """
        from mlopenapp.utils import io_handler as io

        def train(inpt, params=None):
            io.save([1], "early", type="arg")
            raise RuntimeError("cannot be trained")

        def run_pipeline(input, model, args, params=None):
            return {"text": str(io.load("early", "arg"))}
        """,
    )

    failed = finished(submit("saves_then_fails", kind="train"), status="failed")
    run = finished(submit("saves_then_fails"))

    assert failed["error"] == "RuntimeError: cannot be trained"
    assert api.get(f"/api/v1/pipelines/{pipeline['id']}/").json()["current_model"] is None
    assert run["result"]["text"] == "False"
