"""runs.execution: a finished run's outcome is written whatever the database does meanwhile, and a full
disk on the worker fails the run with the disk named, leaving no half result."""

from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.db import DataError, OperationalError
from django.utils import timezone

from mlopen.core import storage
from mlopen.pipelines.models import Pipeline, PipelineVersion, TrainedModel
from mlopen.runs import execution, lifecycle, logs, results, warm, workers
from mlopen.runs.models import Run
from mlopen_runner import Outcome

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
    written = execution.record_outcome(
        running.pk, Run.Status.SUCCEEDED, {"log_chunk": logs.Chunk(running.pk, 0, 0, "all done\n"), "error": None}
    )

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
    fields = {
        "log_chunk": logs.Chunk(running.pk, 0, 0, "epoch 1\n"),
        "result_folder": "results/7",
        "result_rows": 3,
        "progress_message": "x" * 600,
    }
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
    def database_lost(run, work_dir, recorder=None):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(execution, "build_job", database_lost)

    assert execution.execute_run(queued.pk, "w1") == Run.Status.QUEUED

    row = Run.objects.get(pk=queued.pk)
    assert (row.status, row.worker, row.enqueued_at, row.attempt) == ("queued", "", None, 1)
    assert row.log == (
        "mlopen: The database connection was lost before the pipeline started (terminating connection due to "
        "administrator command); the run goes back to the queue.\n"
    )


def test_a_tasks_first_query_on_a_connection_the_database_just_ended_is_tried_again_on_a_fresh_one(queued, monkeypatch):
    # A kept connection the server ended a moment ago can pass the cheap check before a task
    # (mlopen.core.postgresql): its first query fails, and the worker reconnects instead of failing.
    real = execution._QUEUE_OF_RUN
    tries = []

    class EndedOnce:
        def rows(self, **values):
            tries.append(values)
            if len(tries) == 1:
                raise OperationalError("terminating connection due to administrator command")
            return real.rows(**values)

    monkeypatch.setattr(execution, "_QUEUE_OF_RUN", EndedOnce())
    claimed = []
    monkeypatch.setattr(execution.lifecycle, "claim_next", lambda *args: claimed.append(args))

    assert execution.execute_run(queued.pk, "w1") == "skipped (nothing to take)"
    assert len(tries) == 2 and len(claimed) == 1


def test_a_task_whose_database_stays_away_leaves_its_run_queued(queued, monkeypatch):
    def away(read, patience=None):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(execution.lifecycle, "retry_transient", away)
    monkeypatch.setattr(execution.lifecycle, "claim_next", lambda *args: pytest.fail("nothing may be claimed"))

    assert execution.execute_run(queued.pk, "w1") == "skipped (database unavailable)"
    assert Run.objects.get(pk=queued.pk).status == "queued"


def test_the_message_of_a_run_deleted_in_flight_is_skipped_and_other_runs_stay_queued(queued, monkeypatch):
    monkeypatch.setattr(execution.lifecycle, "claim_next", lambda *args: pytest.fail("nothing may be claimed"))
    assert execution.execute_run(queued.pk + 1000, "w1") == "skipped (missing)"
    assert Run.objects.get(pk=queued.pk).status == "queued"


def test_a_run_claimed_by_a_worker_that_is_shutting_down_goes_back_to_the_queue_unstarted(queued, monkeypatch):
    monkeypatch.setattr(execution, "build_job", lambda run, work_dir, recorder=None: object())
    monkeypatch.setattr(workers, "shutdown_due", lambda: True)
    monkeypatch.setattr(warm, "execute", lambda *args: pytest.fail("the pipeline must not start"))

    assert execution.execute_run(queued.pk, "w1") == Run.Status.QUEUED
    assert Run.objects.get(pk=queued.pk).status == "queued"


DISK_FULL = "No space left on device on the disk holding"


def make_run(kind: str, status: str = Run.Status.RUNNING) -> Run:
    owner = get_user_model().objects.create_user("alice", password="x")
    pipeline = Pipeline.objects.create(name="iris", description="iris pipeline")
    version = PipelineVersion.objects.create(
        pipeline=pipeline, number=1, control_filename="iris.py", folder=f"pipelines/{pipeline.pk}/v1"
    )
    running = status == Run.Status.RUNNING
    return Run.objects.create(
        pipeline=pipeline,
        version=version,
        kind=kind,
        owner=owner,
        status=status,
        worker="w1" if running else "",
        started_at=timezone.now() if running else None,
        heartbeat_at=timezone.now() if running else None,
    )


@pytest.fixture
def two_mb_free(monkeypatch):
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_bavail=512, f_frsize=4096))


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_result_that_cannot_be_stored_on_a_full_disk_fails_the_run_and_leaves_no_half_result(
    monkeypatch, two_mb_free, settings
):
    settings.MLOPEN_RESULT_IN_DATABASE_KB = 0  # a result in files, however small
    run = make_run(Run.Kind.RUN)
    real_write = storage.write_stream
    writes = []

    def table_then_full(name, chunks):  # the table fits, its result.json does not
        writes.append(name)
        if len(writes) > 1:
            full_disk()
        return real_write(name, chunks)

    monkeypatch.setattr(storage, "write_stream", table_then_full)
    outcome = Outcome(status="succeeded", result={"data": [[1, 2]], "columns": ["a", "b"]})

    status = execution.finish(run, outcome, execution.RunRecorder(run))

    run.refresh_from_db()
    assert (status, run.status) == (Run.Status.FAILED, Run.Status.FAILED)
    assert run.error == (
        f"The run finished but the result could not be stored: {DISK_FULL} {storage.local_root()}: 2 MB free"
    )
    assert writes == [f"results/{run.pk}/{results.TABLE}", f"results/{run.pk}/{results.META}"]
    assert not storage.exists(results.folder_of(run.pk))
    assert run.result_folder in ("", None)


def test_a_trained_model_that_cannot_be_stored_on_a_full_disk_fails_the_run_and_records_no_model(
    monkeypatch, tmp_path, two_mb_free
):
    run = make_run(Run.Kind.TRAIN)
    model = tmp_path / "model.pkl"
    model.write_bytes(b"pickled")
    monkeypatch.setattr(storage, "write_stream", full_disk)

    status = execution.finish(run, Outcome(status="succeeded", model_path=str(model)), execution.RunRecorder(run))

    run.refresh_from_db()
    assert (status, run.status) == (Run.Status.FAILED, Run.Status.FAILED)
    assert run.error == (
        f"The run finished but the trained model could not be stored: {DISK_FULL} {storage.local_root()}: 2 MB free"
    )
    assert not TrainedModel.objects.exists()


def test_another_storage_error_is_not_called_a_full_disk(monkeypatch, tmp_path):
    run = make_run(Run.Kind.TRAIN)
    model = tmp_path / "model.pkl"
    model.write_bytes(b"pickled")

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(storage, "write_stream", denied)

    with pytest.raises(PermissionError):  # execute_run reports it as the platform's failure
        execution.finish(run, Outcome(status="succeeded", model_path=str(model)), execution.RunRecorder(run))


def test_a_full_disk_while_preparing_the_run_fails_it_with_the_disk_named(monkeypatch, two_mb_free):
    run = make_run(Run.Kind.RUN, status=Run.Status.QUEUED)

    def preparing_on_a_full_disk(run, work_dir, recorder=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/srv/mlopen/work/runs/1/job.json")

    monkeypatch.setattr(execution, "build_job", preparing_on_a_full_disk)

    assert execution.execute_run(run.pk, "w1") == Run.Status.FAILED

    run.refresh_from_db()
    assert run.error == f"{DISK_FULL} /srv/mlopen/work/runs/1/job.json: 2 MB free"
