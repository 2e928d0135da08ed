"""Cancelling: a queued run never starts, a running one is killed (its whole process tree) within
two seconds, a finished one cannot be cancelled.
"""

from __future__ import annotations

import time
import uuid

import pytest
from django.conf import settings
from engine_support import alive, poll, processes_with_marker

from mlopen.pipelines.models import Pipeline
from mlopen.runs.models import Run

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


def test_a_cancelled_queued_run_is_never_started_by_a_worker_that_comes_later(pipeline_from, submit, api, start_worker):
    pipeline_from(
        "later",
        """
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            return {"text": "should not run"}
        """,
    )
    # A queue of its own: no worker of this test session takes the run before it is cancelled.
    queue = f"{settings.MLOPEN_DEFAULT_QUEUE}-later"
    Pipeline.objects.filter(name="later").update(queue=queue)
    run = submit("later")

    response = api.post(f"/api/v1/runs/{run['id']}/cancel/")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    worker = start_worker(queues=queue)
    poll(
        lambda: f"run {run['id']} not claimed" in worker.log_text(),
        timeout=30,
        message="the worker received the cancelled run's message",
    )
    cancelled = Run.objects.get(pk=run["id"])
    assert (cancelled.status, cancelled.attempt, cancelled.worker, cancelled.started_at) == ("cancelled", 0, "", None)


def test_cancelling_a_running_run_kills_its_process_tree_within_two_seconds(pipeline_from, submit, api, module_worker):
    marker = f"mlopen-grandchild-{uuid.uuid4().hex}"
    pipeline_from(
        "spawner",
        f"""
        import subprocess, sys, time
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{marker}"])
            print("spawned", flush=True)
            time.sleep(300)
        """,
    )
    run = submit("spawner")
    poll(lambda: "spawned" in Run.objects.get(pk=run["id"]).log, timeout=60, message="the pipeline started")
    [grandchild] = poll(lambda: processes_with_marker(marker), timeout=5, message="the grandchild is visible")
    # The pipeline's processes: the grandchild and its ancestors up to (not including) the worker.
    ancestors = grandchild.parents()
    tree = [grandchild, *ancestors[: [p.pid for p in ancestors].index(module_worker.process.pid)]]

    requested = time.monotonic()
    response = api.post(f"/api/v1/runs/{run['id']}/cancel/")
    poll(
        lambda: Run.objects.get(pk=run["id"]).status == "cancelled",
        timeout=5,
        interval=0.02,
        message="the run is cancelled",
    )
    latency = time.monotonic() - requested
    print(f"cancelled {latency:.2f} s after the request")

    assert response.status_code == 200, response.content
    assert latency < 2.0, f"cancelled after {latency:.2f} s"
    poll(lambda: not any(alive(p) for p in tree), timeout=1, message="the pipeline's processes are gone")
    cancelled = Run.objects.get(pk=run["id"])
    assert cancelled.error == "Cancelled by the user while running."
    assert module_worker.process.poll() is None


def test_cancelling_a_finished_run_is_refused_with_409(pipeline_from, submit, api, wait_for_run, module_worker):
    pipeline_from(
        "quick",
        """
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            return {"text": "done"}
        """,
    )
    run = wait_for_run(submit("quick")["id"], timeout=60)

    response = api.post(f"/api/v1/runs/{run.pk}/cancel/")

    assert run.status == "succeeded"
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"Run {run.pk} already succeeded; only queued or running runs can be cancelled."
    )
    assert Run.objects.get(pk=run.pk).status == "succeeded"


def test_a_running_run_whose_row_is_deleted_is_stopped_and_its_worker_takes_the_next(
    pipeline_from, submit, wait_for_run, module_worker
):
    marker = f"mlopen-orphan-{uuid.uuid4().hex}"
    pipeline_from(
        "orphaned",
        f"""
        import time
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            print("{marker}", flush=True)
            time.sleep(300)
        """,
    )
    pipeline_from(
        "next_one",
        """
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            return {"text": "ran"}
        """,
    )
    run = submit("orphaned")
    poll(lambda: marker in Run.objects.get(pk=run["id"]).log, timeout=60, message="the pipeline started")

    Run.objects.filter(pk=run["id"]).delete()

    following = wait_for_run(submit("next_one")["id"], timeout=60)
    assert following.status == "succeeded", following.error
    assert following.worker == module_worker.name
