"""Runtimes: pipelines run on a named, locked package set built by uv (not on the platform's own
virtualenv), each run records what it ran on, and a version keeps the lock it was created with.

The default runtime (datascience) is built once per test process by tests/conftest.py; the tests
of building itself use "tiny", a lock with one small package (tests/fixtures/runtimes/tiny), so a
build takes about a second.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from engine_support import poll

from mlopen.pipelines import runtimes
from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen_runner import sandbox

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

# The original mlopen's knn_control.py, in the same style: column 4 (a species name) as labels.
LEGACY_KNN = """
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

def get_params(run=False):
    return None

def train(inpt, params=None):
    pass

def run_pipeline(input, model, args, params=None):
    dataset = pd.read_csv(input)
    X = dataset.iloc[:, :-1].values
    y = dataset.iloc[:, 4].values
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    classifier = KNeighborsClassifier(n_neighbors=3).fit(X_train, y_train)
    return {"text": f"accuracy {classifier.score(X_test, y_test):.2f} with pandas {pd.__version__}"}
"""

IRIS_LIKE = "sepal_length,sepal_width,petal_length,petal_width,species\n" + "".join(
    f"{5 + i % 7 * 0.3:.1f},{3 + i % 3 * 0.2:.1f},{1 + (i % 3) * 2:.1f},{0.2 + (i % 3) * 0.9:.1f},"
    f"{['setosa', 'versicolor', 'virginica'][i % 3]}\n"
    for i in range(60)
)

REPORTS_TINYDB = """
def train(inpt, params=None):
    pass

def run_pipeline(input, model, args, params=None):
    import tinydb
    try:
        import pandas
        pandas_there = "pandas importable"
    except ImportError:
        pandas_there = "no pandas"
    return {"text": f"tinydb {tinydb.__version__}; {pandas_there}"}
"""


@pytest.fixture
def tiny_runtimes(settings):
    """The runtimes an admin added (MLOPEN_RUNTIMES_DIR): "tiny" besides the shipped ones."""
    settings.MLOPEN_RUNTIMES_DIR = FIXTURES / "runtimes"
    return settings


def _csv(api, name: str, text: str) -> int:
    response = api.post("/api/v1/datasets/", {"file": SimpleUploadedFile(name, text.encode())}, format="multipart")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_pandas_3s_string_inference_cannot_reach_a_legacy_pipeline_on_the_default_runtime(
    pipeline_from, submit, wait_for_run, run_body, api, module_worker
):
    uploaded = pipeline_from("legacy_knn", LEGACY_KNN)
    data = _csv(api, "iris.csv", IRIS_LIKE)

    run = wait_for_run(submit("legacy_knn", input=data)["id"], timeout=120)
    body = run_body(run.pk)

    assert run.status == "succeeded", f"{run.error}\n{run.log}"
    assert uploaded["versions"][0]["runtime"]["name"] == "datascience"
    environment = body["environment"]
    assert environment["runtime"] == "datascience"
    assert environment["digest"] == uploaded["versions"][0]["runtime"]["digest"]
    assert environment["packages"]["pandas"].startswith("2.")
    assert body["result"]["text"].endswith(f"with pandas {environment['packages']['pandas']}")


def test_a_run_records_its_python_and_packages_and_serves_them_as_a_requirements_file(
    pipeline_from, submit, wait_for_run, run_body, api, module_worker
):
    pipeline_from("recorded", REPORTS_TINYDB.replace("import tinydb", "import numpy as tinydb"))

    run = wait_for_run(submit("recorded")["id"], timeout=120)
    environment = run_body(run.pk)["environment"]
    download = api.get(f"/api/v1/runs/{run.pk}/requirements.txt/")

    assert run.status == "succeeded", f"{run.error}\n{run.log}"
    assert environment["python"] == ".".join(map(str, sys.version_info[:3]))  # the platform's base Python
    expected_packages = {"numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "plotly", "pillow"}
    assert expected_packages <= set(environment["packages"])
    assert "django" not in environment["packages"]  # not the platform's virtualenv
    assert download.status_code == 200
    assert download["Content-Type"] == "text/plain; charset=utf-8"
    lines = download.content.decode().splitlines()
    assert lines[0].startswith(f"# Python {environment['python']}, runtime datascience (lock ")
    assert f"pandas=={environment['packages']['pandas']}" in lines
    assert len(lines) == 1 + len(environment["packages"])


def test_a_runtime_that_is_not_known_is_refused_at_upload_naming_the_known_ones(pipeline_from, tiny_runtimes):
    body = pipeline_from("no_such_runtime", REPORTS_TINYDB, runtime="datascience-9", expect=400)

    assert body["errors"]["runtime"] == ("Unknown runtime 'datascience-9'; the known runtimes are: datascience, tiny.")
    assert not Pipeline.objects.filter(name="no_such_runtime").exists()


def test_a_run_whose_runtime_is_not_built_yet_waits_queued_with_the_builds_progress(
    pipeline_from, submit, wait_for_run, run_body, unserved_queue, tiny_runtimes, start_worker
):
    # The build goes to the pipeline's queue, which no worker serves yet: the runtime stays "building".
    Pipeline.objects.create(name="waits", queue=unserved_queue)
    uploaded = pipeline_from("waits", REPORTS_TINYDB, runtime="tiny")
    run_id = submit("waits")["id"]
    time.sleep(0.5)
    waiting = run_body(run_id)

    start_worker(queues=unserved_queue)  # builds the runtime, then takes the run it released
    run = wait_for_run(run_id, timeout=120)
    finished = run_body(run_id)

    assert uploaded["versions"][0]["runtime"]["status"] == "building"
    assert waiting["status"] == "queued"
    assert waiting["waiting_for"] == {"runtime": "tiny", "status": "building", "progress": None}
    assert waiting["environment"] is None
    assert run.status == "succeeded", f"{run.error}\n{run.log}"
    assert finished["waiting_for"] is None
    assert finished["result"]["text"] == "tinydb 4.8.2; no pandas"
    assert finished["environment"]["packages"] == {"tinydb": "4.8.2"}
    version = PipelineVersion.objects.get(pipeline__name="waits")
    assert (version.runtime.build_status, version.runtime.progress_fraction) == ("ready", 1.0)


def test_a_version_keeps_the_lock_it_was_created_with_when_a_newer_mlopen_ships_another(
    pipeline_from, submit, wait_for_run, run_body, tiny_runtimes, module_worker
):
    first = pipeline_from("kept", REPORTS_TINYDB, runtime="tiny")["versions"][0]
    tiny_runtimes.MLOPEN_RUNTIMES_DIR = FIXTURES / "runtimes-upgraded"  # mlopen upgraded: "tiny" has a new lock
    on_the_old_lock = wait_for_run(submit("kept")["id"], timeout=120)
    second = pipeline_from("kept", REPORTS_TINYDB, runtime="tiny")["versions"][0]
    on_the_new_lock = wait_for_run(submit("kept")["id"], timeout=120)

    assert first["runtime"]["digest"] != second["runtime"]["digest"]
    assert on_the_old_lock.status == on_the_new_lock.status == "succeeded"
    assert run_body(on_the_old_lock.pk)["environment"]["packages"] == {"tinydb": "4.8.2"}
    assert run_body(on_the_new_lock.pk)["environment"]["packages"] == {"tinydb": "4.7.1"}
    # Both venvs stay, each under its lock's digest.
    assert runtimes.built_here(first["runtime"]["digest"]) and runtimes.built_here(second["runtime"]["digest"])


def test_requirements_are_layered_on_the_runtime_keeping_its_versions(
    pipeline_from, submit, wait_for_run, run_body, module_worker
):
    source = REPORTS_TINYDB.replace('"pandas importable"', '"pandas " + pandas.__version__')
    pipeline_from("layered", source, requirements="tinydb==4.8.2\npandas-flavor\n")
    version = poll(
        lambda: (v := PipelineVersion.objects.get(pipeline__name="layered")).env_status in ("ready", "failed") and v,
        timeout=180,
        message="the environment is built",
    )

    run = wait_for_run(submit("layered")["id"], timeout=120)
    environment = run_body(run.pk)["environment"]

    assert version.env_status == "ready", version.env_log
    assert run.status == "succeeded", f"{run.error}\n{run.log}"
    # pandas-flavor needs pandas (and xarray): the runtime's pandas 2 satisfies it, so none newer came in.
    assert run_body(run.pk)["result"]["text"] == f"tinydb 4.8.2; pandas {environment['packages']['pandas']}"
    assert environment["packages"]["pandas"].startswith("2.")
    assert environment["runtime"] == "datascience"
    assert (environment["packages"]["tinydb"], "pandas-flavor" in environment["packages"]) == ("4.8.2", True)


WRITES_INTO_ITS_RUNTIME = """
import os
import sys

def train(inpt, params=None):
    pass

def run_pipeline(input, model, args, params=None):
    target = os.path.join(sys.prefix, "planted.py")
    try:
        with open(target, "w") as handle:
            handle.write("x = 1")
        return {"text": f"wrote {target}"}
    except OSError as exc:
        return {"text": f"refused: {exc.__class__.__name__}"}
"""


def test_a_pipeline_cannot_change_the_runtime_other_pipelines_run_on(
    pipeline_from, submit, wait_for_run, run_body, module_worker
):
    if not sandbox.active():
        pytest.skip("without bubblewrap the worker's own user runs pipelines; the runtime is only as safe as it")
    pipeline_from("planter", WRITES_INTO_ITS_RUNTIME)

    run = wait_for_run(submit("planter")["id"], timeout=120)

    assert run.status == "succeeded", f"{run.error}\n{run.log}"
    assert run_body(run.pk)["result"]["text"] in ("refused: OSError", "refused: PermissionError")
    digest = run_body(run.pk)["environment"]["digest"]
    assert not (runtimes.venv_path(digest) / "planted.py").exists()
