"""Warm runs on a real worker: a trained pipeline's runs share one process with the model loaded,
give the results a cold run gives, and fail exactly as a cold run fails when that process is
killed or dies.

The pipeline prints a token made when its control file is imported: two runs printing the same
token were served by the same process.
"""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings
from engine_support import poll

from mlopen.pipelines.models import Pipeline
from mlopen.runs.models import Run

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

WARM = """
import os, sys, time, uuid
from mlopenapp.utils import io_handler as io

TOKEN = uuid.uuid4().hex
print("imported", TOKEN, flush=True)

def get_params(run=True):
    if run:
        return {"mode": ("string", {"default": "ok"})}
    return {"weight": ("integer", {"default": 1})}

def train(inpt, params=None):
    io.save_pipeline([(params["weight"], "weight")], [("words", "unit")], "warm")

def run_pipeline(input, model, args, params=None):
    print("serving", TOKEN, params["mode"], flush=True)
    io.log_metric("weight", model)
    if params["mode"] == "sleep":
        time.sleep(120)
    if params["mode"] == "crash":
        os._exit(3)
    if params["mode"] == "devnull":
        sys.stdout = open(os.devnull, "w")
    lines = [line.strip() for line in input.open("r") if line.strip()]
    return {
        "columns": ["line", "score"],
        "data": [[line, len(line) * model] for line in lines],
        "graphs": {"data": [{"type": "bar", "x": lines, "y": [len(line) for line in lines]}], "layout": {}},
        "text": f"{len(lines)} {args['unit']}, weight {model}",
    }
"""


def _token(run: Run) -> str:
    [line] = [line for line in run.log.splitlines() if line.startswith("serving ")]
    return line.split()[1]


@pytest.fixture
def finished(wait_for_run, module_worker):
    """wait_for_run that shows the worker's log when a run does not finish in time."""

    def wait(run_id: int, timeout: float = 60) -> Run:
        try:
            return wait_for_run(run_id, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker log:\n{module_worker.log_text()[-4000:]}") from None

    return wait


@pytest.fixture
def trained(pipeline_from, submit, finished, upload_dataset):
    """The WARM pipeline, trained with weight 2, and a dataset to run it on."""
    pipeline_from("warm", WARM)
    assert finished(submit("warm", kind="train", params={"weight": 2})["id"]).status == "succeeded"
    return upload_dataset("lines.txt", b"alpha\nbeta\ngamma\n")


def test_a_second_run_of_a_trained_pipeline_is_served_by_the_same_process(trained, submit, finished, module_worker):
    first = finished(submit("warm", input=trained["id"])["id"])
    second = finished(submit("warm", input=trained["id"])["id"])

    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert _token(first) == _token(second)
    assert first.log.startswith("imported ") and "imported" not in second.log
    assert second.log == f"serving {_token(first)} ok\n"
    assert list(second.metrics.values_list("name", "value")) == [("weight", 2.0)]
    assert re.search(rf"run {second.pk}: warm process reused \(pid \d+", module_worker.log_text())
    # Each warm job's folders are deleted after it, off the run's path (mlopen_runner.warm_pool._Trash).
    trash = settings.MLOPEN_WORK_DIR / "warm" / f"worker-{module_worker.process.pid}" / "trash"
    poll(lambda: trash.is_dir() and not any(trash.iterdir()), timeout=30, message="the warm jobs' folders deleted")


def test_a_new_training_replaces_the_warm_process_and_runs_use_the_new_model(
    trained, submit, finished, module_worker, api
):
    before = finished(submit("warm", input=trained["id"])["id"])

    assert finished(submit("warm", kind="train", params={"weight": 5})["id"]).status == "succeeded"
    after = finished(submit("warm", input=trained["id"])["id"])

    assert _token(after) != _token(before)
    assert api.get(f"/api/v1/runs/{after.pk}/").json()["result"]["text"] == "3 words, weight 5"


def test_cold_and_warm_runs_of_the_same_input_give_the_same_result_json(
    trained, submit, finished, api, module_worker, start_worker
):
    cold_queue = f"{module_worker.name}-cold"
    start_worker(queues=cold_queue, extra_env={"MLOPEN_WARM_RUNS": "false"})
    Pipeline.objects.filter(name="warm").update(queue=cold_queue)
    cold = finished(submit("warm", input=trained["id"])["id"])
    Pipeline.objects.filter(name="warm").update(queue="")
    finished(submit("warm", input=trained["id"])["id"])  # starts the warm process
    warm = finished(submit("warm", input=trained["id"])["id"])

    def result(run: Run) -> dict:
        return api.get(f"/api/v1/runs/{run.pk}/result/").json()

    assert "imported" in cold.log and "imported" not in warm.log
    assert result(warm) == result(cold)
    assert result(warm)["data"] == [["alpha", 10], ["beta", 8], ["gamma", 10]]
    assert json.loads(
        b"".join(api.get(f"/api/v1/runs/{warm.pk}/download/?format=json").streaming_content)
    ) == json.loads(b"".join(api.get(f"/api/v1/runs/{cold.pk}/download/?format=json").streaming_content))


def test_a_warm_run_over_its_timeout_fails_as_a_cold_one_and_the_next_run_gets_a_new_process(
    trained, submit, finished, module_worker
):
    before = finished(submit("warm", input=trained["id"])["id"])

    timed_out = finished(submit("warm", input=trained["id"], timeout=1, params={"mode": "sleep"})["id"], timeout=30)
    after = finished(submit("warm", input=trained["id"])["id"])

    assert timed_out.status == "failed"
    assert re.fullmatch(r"Run timed out after 1(\.\d)? s \(limit 1 s\)", timed_out.error), timed_out.error
    assert after.status == "succeeded" and _token(after) != _token(before)


def test_cancelling_a_warm_run_kills_its_process_and_the_next_run_gets_a_new_one(
    trained, submit, finished, api, module_worker
):
    before = finished(submit("warm", input=trained["id"])["id"])
    run = submit("warm", input=trained["id"], params={"mode": "sleep"})
    poll(lambda: "serving" in Run.objects.get(pk=run["id"]).log, timeout=30, message="the run started")

    assert api.post(f"/api/v1/runs/{run['id']}/cancel/").status_code == 200
    cancelled = finished(run["id"], timeout=10)
    after = finished(submit("warm", input=trained["id"])["id"])

    assert (cancelled.status, cancelled.error) == ("cancelled", "Cancelled by the user while running.")
    assert after.status == "succeeded" and _token(after) != _token(before)


def test_a_warm_process_that_dies_fails_its_run_with_the_exit_status_and_the_next_run_gets_a_new_one(
    trained, submit, finished, module_worker
):
    before = finished(submit("warm", input=trained["id"])["id"])

    crashed = finished(submit("warm", input=trained["id"], params={"mode": "crash"})["id"], timeout=30)
    after = finished(submit("warm", input=trained["id"])["id"])

    assert (crashed.status, crashed.error) == ("failed", "Pipeline process exited with status 3")
    assert crashed.log == f"serving {_token(before)} crash\n"
    assert after.status == "succeeded" and _token(after) != _token(before)


def test_a_run_that_leaves_its_process_unlike_a_fresh_one_succeeds_and_the_next_run_gets_a_new_one(
    trained, submit, finished, module_worker
):
    before = finished(submit("warm", input=trained["id"])["id"])

    poisoning = finished(submit("warm", input=trained["id"], params={"mode": "devnull"})["id"])
    after = finished(submit("warm", input=trained["id"])["id"])

    assert poisoning.status == "succeeded" and poisoning.log == f"serving {_token(before)} devnull\n"
    assert after.status == "succeeded" and _token(after) != _token(before)
    assert after.log == f"imported {_token(after)}\nserving {_token(after)} ok\n"
    assert re.search(
        rf"run {poisoning.pk}: warm process retired \(pid \d+\): the job replaced or closed sys.stdout",
        module_worker.log_text(),
    )
