"""runs.execution: a finished run's outcome is written whatever the database does meanwhile."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import DataError, OperationalError
from django.utils import timezone

from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen.runs import execution, lifecycle, warm, workers
from mlopen.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def running(db) -> Run:
    owner = get_user_model().objects.create_user("alice", password="x")
    pipeline = Pipeline.objects.create(name="iris", description="iris pipeline")
    version = PipelineVersion.objects.create(
        pipeline=pipeline, number=1, control_filename="iris.py", folder=f"pipelines/{pipeline.pk}/v1"
    )
    return Run.objects.create(
        pipeline=pipeline,
        version=version,
        kind=Run.Kind.RUN,
        owner=owner,
        status=Run.Status.RUNNING,
        worker="w1",
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )


@pytest.fixture
def pending(monkeypatch) -> execution.PendingOutcomes:
    fresh = execution.PendingOutcomes()
    monkeypatch.setattr(execution, "pending_outcomes", fresh)
    return fresh


def test_an_outcome_the_database_cannot_take_now_is_kept_and_written_once_it_can(running, monkeypatch, pending):
    real_finish = lifecycle.finish

    def database_away(*args, **kwargs):
        raise OperationalError("database or disk is full")

    monkeypatch.setattr(lifecycle, "finish", database_away)
    written = execution.record_outcome(running.pk, Run.Status.SUCCEEDED, {"log": "all done\n", "error": None})

    assert written is False
    assert pending.run_ids() == [running.pk]
    assert pending.write_due() == []  # still away: kept
    assert Run.objects.get(pk=running.pk).status == "running"

    monkeypatch.setattr(lifecycle, "finish", real_finish)
    assert pending.write_due() == [running.pk]
    row = Run.objects.get(pk=running.pk)
    assert (row.status, row.log, row.error) == ("succeeded", "all done\n", None)
    assert pending.run_ids() == []


def test_an_outcome_the_database_refuses_fails_the_run_with_the_cause_keeping_its_log_and_result(
    running, monkeypatch, pending
):
    real_finish = lifecycle.finish

    def refuse_success(run_id, status, **fields):
        if status == Run.Status.SUCCEEDED:
            raise DataError("value too long for type character varying(500)")
        return real_finish(run_id, status, **fields)

    monkeypatch.setattr(lifecycle, "finish", refuse_success)
    fields = {"log": "epoch 1\n", "result_folder": "results/7", "result_rows": 3, "progress_message": "x" * 600}
    assert execution.record_outcome(running.pk, Run.Status.SUCCEEDED, fields) is True

    row = Run.objects.get(pk=running.pk)
    assert (row.status, row.log, row.result_folder, row.result_rows) == ("failed", "epoch 1\n", "results/7", 3)
    assert row.error == (
        "The run succeeded, but mlopen could not record its outcome: "
        "DataError: value too long for type character varying(500)"
    )
    assert pending.run_ids() == []


@pytest.fixture
def queued(running) -> Run:
    Run.objects.filter(pk=running.pk).update(status=Run.Status.QUEUED, worker="", started_at=None, heartbeat_at=None)
    return Run.objects.get(pk=running.pk)


def test_a_run_whose_database_went_away_before_its_pipeline_started_goes_back_to_the_queue(queued, monkeypatch):
    def database_lost(run, work_dir):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(execution, "build_job", database_lost)

    assert execution.execute_run(queued.pk, "w1") == Run.Status.QUEUED

    row = Run.objects.get(pk=queued.pk)
    assert (row.status, row.worker, row.enqueued_at, row.attempt) == ("queued", "", None, 1)
    assert row.log == (
        "mlopen: The database connection was lost before the pipeline started (terminating connection due to "
        "administrator command); the run goes back to the queue.\n"
    )


def test_a_run_claimed_by_a_worker_that_is_shutting_down_goes_back_to_the_queue_unstarted(queued, monkeypatch):
    monkeypatch.setattr(execution, "build_job", lambda run, work_dir: object())
    monkeypatch.setattr(workers, "shutdown_due", lambda: True)
    monkeypatch.setattr(warm, "execute", lambda *args: pytest.fail("the pipeline must not start"))

    assert execution.execute_run(queued.pk, "w1") == Run.Status.QUEUED
    assert Run.objects.get(pk=queued.pk).status == "queued"
