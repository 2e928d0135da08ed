"""Exactly once: however often Celery delivers a run's message and however many workers compete,
each run is claimed by one worker, once (the conditional update in runs.execution.claim).
"""

from __future__ import annotations

import pytest
from engine_support import poll

from mlopen.pipelines.models import TrainedModel
from mlopen.runs.models import Run
from mlopen.runs.tasks import execute_run

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


def test_a_run_whose_message_is_delivered_twice_runs_once(pipeline_from, submit, wait_for_run, start_worker):
    first, second = start_worker(), start_worker()
    pipeline_from(
        "counted",
        """
        from mlopenapp.utils import io_handler as io
        def train(inpt, params=None):
            print("training", flush=True)
            io.save_pipeline([(1, "one")], [], "counted")
        def run_pipeline(input, model, args, params=None):
            return {}
        """,
    )
    run = submit("counted", kind="train")
    execute_run.apply_async(kwargs={"run_id": run["id"]}, queue=run["queue"])  # the duplicate

    finished = wait_for_run(run["id"], timeout=60)
    poll(
        lambda: f"run {run['id']} not claimed" in first.log_text() + second.log_text(),
        timeout=30,
        message="the duplicate message was received",
    )

    assert finished.status == "succeeded"
    assert finished.attempt == 1
    assert finished.log == "training\n"
    assert TrainedModel.objects.filter(run_id=run["id"]).count() == 1


def test_thirty_runs_over_two_workers_each_run_exactly_once(pipeline_from, submit, wait_for_run, start_worker):
    workers = {start_worker().name, start_worker().name}
    pipeline_from(
        "small",
        """
        import time
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            time.sleep(0.1)
            return {"text": "ran"}
        """,
    )

    ids = [submit("small")["id"] for _ in range(30)]
    for run_id in ids:
        wait_for_run(run_id, timeout=120)

    runs = Run.objects.filter(pk__in=ids)
    assert [(r.status, r.attempt) for r in runs] == [("succeeded", 1)] * 30
    assert {r.worker for r in runs} == workers
