"""runs.lifecycle: each change of a run's status, the one it allows and the one it refuses, that
every end is announced, and that a write survives a dropped connection."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import OperationalError
from django.db.models import QuerySet
from django.utils import timezone

from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen.runs import lifecycle, logs, waiting
from mlopen.runs.models import Run, RunMetric

pytestmark = pytest.mark.django_db


@pytest.fixture
def announced(monkeypatch) -> list[int]:
    """The ids of the runs announced as finished, in order."""
    ids: list[int] = []
    monkeypatch.setattr(waiting, "announce_finished", ids.append)
    return ids


class FakeClock:
    """Stands in for the ``time`` module in lifecycle: sleeping advances it at once."""

    def __init__(self):
        self.now = 0.0
        self.pauses: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(lifecycle, "time", fake)
    return fake


@pytest.fixture
def make_run(db):
    owner = get_user_model().objects.create_user("alice", password="x")
    pipeline = Pipeline.objects.create(name="iris", description="iris pipeline")
    PipelineVersion.objects.create(
        pipeline=pipeline, number=1, control_filename="iris.py", folder=f"pipelines/{pipeline.pk}/v1"
    )

    def make(status: str = Run.Status.QUEUED, **fields) -> Run:
        if status != Run.Status.QUEUED:
            fields = {"worker": "w1", "started_at": timezone.now(), "heartbeat_at": timezone.now(), **fields}
        return Run.objects.create(
            pipeline=pipeline, version=pipeline.latest_version, kind=Run.Kind.RUN, owner=owner, status=status, **fields
        )

    return make


@pytest.fixture
def first_update_fails(monkeypatch) -> list[str]:
    """The first UPDATE of any row raises OperationalError, as on a dropped connection; later ones run."""
    raised: list[str] = []
    real_update = QuerySet.update

    def update(self, **kwargs):
        if not raised:
            raised.append("connection lost")
            raise OperationalError("server closed the connection unexpectedly")
        return real_update(self, **kwargs)

    def take(*args):  # the claim's UPDATE is written by hand, not by the ORM
        if not raised:
            raised.append("connection lost")
            raise OperationalError("server closed the connection unexpectedly")
        return real_take(*args)

    real_take = lifecycle._take_statement
    monkeypatch.setattr(QuerySet, "update", update)
    monkeypatch.setattr(lifecycle, "_take_statement", take)
    return raised


def _row(run: Run) -> Run:
    return Run.objects.get(pk=run.pk)


# claim


def test_claim_takes_a_queued_run_for_the_worker(make_run):
    queued = make_run()

    taken = lifecycle.claim(queued.pk, "w1", "bubblewrap")

    assert (taken.status, taken.worker, taken.sandbox, taken.attempt) == ("running", "w1", "bubblewrap", 1)
    assert taken.started_at is not None and taken.heartbeat_at == taken.started_at


def test_claim_refuses_a_run_another_worker_took(make_run):
    run = make_run()
    lifecycle.claim(run.pk, "w1", "none")

    assert lifecycle.claim(run.pk, "w2", "none") is None
    assert (_row(run).worker, _row(run).attempt) == ("w1", 1)


def test_claim_refuses_a_cancelled_run(make_run):
    run = make_run(Run.Status.CANCELLED)

    assert lifecycle.claim(run.pk, "w1", "none") is None
    assert _row(run).status == "cancelled"


def test_claim_is_retried_after_a_dropped_connection(make_run, first_update_fails):
    run = make_run()

    assert lifecycle.claim(run.pk, "w1", "none").status == "running"
    assert first_update_fails == ["connection lost"]


# record_progress and heartbeat


def _chunk(run, text: str, seq: int = 0, offset: int = 0) -> logs.Chunk:
    return logs.Chunk(run.pk, seq, offset, text)


def test_record_progress_appends_each_chunk_once_even_when_a_retry_sends_it_again(make_run):
    run = make_run(Run.Status.RUNNING)

    assert lifecycle.record_progress(run.pk, log_chunk=_chunk(run, "epoch 1\n")) is True
    assert lifecycle.record_progress(run.pk, log_chunk=_chunk(run, "epoch 1\n")) is True  # a lost answer, sent again
    assert lifecycle.record_progress(run.pk, log_chunk=_chunk(run, "epoch 2\n", 1, 8)) is True

    assert _row(run).log == "epoch 1\nepoch 2\n"


def test_record_progress_writes_the_log_progress_and_metrics_of_a_running_run(make_run):
    run = make_run(Run.Status.RUNNING)
    metric = RunMetric(run_id=run.pk, name="loss", value=0.5, step=1)

    assert (
        lifecycle.record_progress(run.pk, [metric], log_chunk=_chunk(run, "epoch 1\n"), progress_fraction=0.5) is True
    )
    row = _row(run)
    assert (row.log, row.progress_fraction, row.status) == ("epoch 1\n", 0.5, "running")
    assert list(row.metrics.values_list("name", "value")) == [("loss", 0.5)]


def test_record_progress_refuses_a_run_no_longer_running(make_run):
    run = make_run(Run.Status.FAILED, log="before")

    assert (
        lifecycle.record_progress(
            run.pk, [RunMetric(run_id=run.pk, name="loss", value=1)], log_chunk=_chunk(run, "after", 1, 6)
        )
        is False
    )
    assert _row(run).log == "before"
    assert not RunMetric.objects.exists()


def test_record_progress_is_retried_after_a_dropped_connection(make_run, first_update_fails):
    run = make_run(Run.Status.RUNNING)

    assert lifecycle.record_progress(run.pk, log_chunk=_chunk(run, "line\n")) is True
    assert _row(run).log == "line\n"


def test_heartbeat_refreshes_only_the_run_this_worker_executes(make_run):
    stale = timezone.now() - timedelta(minutes=5)
    mine = make_run(Run.Status.RUNNING, worker="w1", heartbeat_at=stale)
    theirs = make_run(Run.Status.RUNNING, worker="w2", heartbeat_at=stale)

    assert lifecycle.heartbeat(mine.pk, "w1") is True
    assert lifecycle.heartbeat(theirs.pk, "w1") is False
    assert _row(mine).heartbeat_at > stale
    assert _row(theirs).heartbeat_at == stale


# finish


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_finish_ends_a_running_run_and_announces_it(make_run, announced, status):
    run = make_run(Run.Status.RUNNING)

    assert (
        lifecycle.finish(
            run.pk,
            status,
            error="why",
            log_chunk=_chunk(run, "all of it"),
            metrics=[RunMetric(run_id=run.pk, name="acc", value=0.9)],
        )
        is True
    )
    row = _row(run)
    assert (row.status, row.error, row.log) == (status, "why", "all of it")
    assert row.finished_at is not None
    assert row.metrics.count() == 1
    assert announced == [run.pk]


def test_finish_refuses_a_run_already_failed_as_lost(make_run, announced):
    run = make_run(Run.Status.FAILED, error="lost")

    assert lifecycle.finish(run.pk, "succeeded", metrics=[RunMetric(run_id=run.pk, name="acc", value=1)]) is False
    assert (_row(run).status, _row(run).error) == ("failed", "lost")
    assert not RunMetric.objects.exists()
    assert announced == []


def test_finish_refuses_a_status_that_is_not_an_end(make_run):
    run = make_run(Run.Status.RUNNING)

    with pytest.raises(ValueError):
        lifecycle.finish(run.pk, "queued")
    assert _row(run).status == "running"


def test_finish_is_retried_after_a_dropped_connection(make_run, announced, first_update_fails):
    run = make_run(Run.Status.RUNNING)

    assert lifecycle.finish(run.pk, "succeeded") is True
    assert _row(run).status == "succeeded"
    assert first_update_fails == ["connection lost"]
    assert announced == [run.pk]


def _database_down(monkeypatch) -> list[int]:
    tries: list[int] = []

    def update(self, *args, **kwargs):
        tries.append(1)
        raise OperationalError("the database is down")

    monkeypatch.setattr(QuerySet, "update", update)
    monkeypatch.setattr(lifecycle, "_take_statement", update)  # the claim's UPDATE, written by hand
    return tries


def test_finishing_a_run_keeps_trying_for_a_minute_with_growing_pauses_then_gives_up(make_run, monkeypatch, clock):
    run = make_run(Run.Status.RUNNING)
    tries = _database_down(monkeypatch)

    with pytest.raises(OperationalError):
        lifecycle.finish(run.pk, "succeeded")

    assert clock.pauses[:6] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert set(clock.pauses[6:]) == {2.0}
    assert lifecycle.FINISH_PATIENCE_SECONDS - 2.0 < sum(clock.pauses) <= lifecycle.FINISH_PATIENCE_SECONDS
    assert len(tries) == len(clock.pauses) + 1


def test_a_claim_waits_out_a_database_blip_of_half_a_minute(make_run, monkeypatch, clock):
    run = make_run()
    tries = _database_down(monkeypatch)

    with pytest.raises(OperationalError):
        lifecycle.claim(run.pk, "w1", "none")

    assert lifecycle.CLAIM_PATIENCE_SECONDS - 2.0 < sum(clock.pauses) <= lifecycle.CLAIM_PATIENCE_SECONDS
    assert len(tries) > 10


def test_a_flush_tries_twice_only_since_the_next_flush_is_its_retry(make_run, monkeypatch):
    run = make_run(Run.Status.RUNNING)
    tries = _database_down(monkeypatch)

    with pytest.raises(OperationalError):
        lifecycle.record_progress(run.pk, log_chunk=_chunk(run, "line"))

    assert len(tries) == lifecycle.FLUSH_TRIES


def test_a_claim_whose_read_back_fails_takes_nothing(make_run, monkeypatch):
    run = make_run()
    real_read_back = lifecycle._TAKEN_RUN.first
    failures: list[str] = []

    def read_back(**values):
        if not failures:
            failures.append("lost after the UPDATE")
            raise OperationalError("server closed the connection unexpectedly")
        return real_read_back(**values)

    monkeypatch.setattr(lifecycle._TAKEN_RUN, "first", read_back)
    taken = lifecycle.claim(run.pk, "w1", "none")

    # The first try's UPDATE was rolled back with its failed read; the second took the run once.
    assert failures == ["lost after the UPDATE"]
    assert (taken.status, taken.attempt) == ("running", 1)


# put_back


def test_put_back_returns_a_run_that_never_started_to_the_queue_to_be_sent_at_once(make_run, announced):
    run = make_run(Run.Status.RUNNING, attempt=1, log="")

    assert lifecycle.put_back(run.pk, "w1", "The database connection was lost before the pipeline started")

    row = _row(run)
    assert (row.status, row.worker, row.started_at, row.heartbeat_at, row.enqueued_at) == (
        "queued",
        "",
        None,
        None,
        None,
    )
    assert row.log == (
        "mlopen: The database connection was lost before the pipeline started; the run goes back to the queue.\n"
    )
    assert announced == []


def test_put_back_fails_a_run_put_back_once_already(make_run, announced):
    run = make_run(Run.Status.RUNNING, attempt=2)

    assert lifecycle.put_back(run.pk, "w1", "Worker w1 was shutting down before the pipeline started")

    row = _row(run)
    assert (row.status, row.error) == (
        "failed",
        "Worker w1 was shutting down before the pipeline started (for the second time).",
    )
    assert announced == [run.pk]


def test_put_back_refuses_a_run_of_another_worker(make_run):
    run = make_run(Run.Status.RUNNING, attempt=1)

    assert not lifecycle.put_back(run.pk, "w2", "reason")
    assert _row(run).status == "running"


# cancel_queued and request_cancel


def test_cancel_queued_cancels_a_run_no_worker_took_and_announces_it(make_run, announced):
    run = make_run()

    assert lifecycle.cancel_queued(run) is True
    row = _row(run)
    assert (row.status, row.error, row.cancel_requested) == ("cancelled", "Cancelled before it started.", True)
    assert announced == [run.pk]


def test_cancel_queued_refuses_a_running_run(make_run, announced):
    run = make_run(Run.Status.RUNNING)

    assert lifecycle.cancel_queued(run) is False
    assert (_row(run).status, _row(run).cancel_requested) == ("running", False)
    assert announced == []


def test_cancel_queued_is_retried_after_a_dropped_connection(make_run, announced, first_update_fails):
    run = make_run()

    assert lifecycle.cancel_queued(run) is True
    assert _row(run).status == "cancelled"


def test_request_cancel_flags_a_running_run_and_leaves_its_status_to_the_worker(make_run, announced):
    run = make_run(Run.Status.RUNNING)

    assert lifecycle.request_cancel(run) is True
    assert (_row(run).status, _row(run).cancel_requested) == ("running", True)
    assert announced == []


def test_request_cancel_refuses_a_finished_run(make_run):
    run = make_run(Run.Status.SUCCEEDED)

    assert lifecycle.request_cancel(run) is False
    assert _row(run).cancel_requested is False


def test_request_cancel_is_retried_after_a_dropped_connection(make_run, first_update_fails):
    run = make_run(Run.Status.RUNNING)

    assert lifecycle.request_cancel(run) is True
    assert _row(run).cancel_requested is True


# fail_lost and fail_runs_of_worker


def test_fail_lost_fails_runs_whose_heartbeat_stopped_and_announces_each(make_run, announced):
    stale = timezone.now() - timedelta(seconds=60)
    lost = make_run(Run.Status.RUNNING, worker="gone-w1", heartbeat_at=stale)
    alive = make_run(Run.Status.RUNNING, worker="w2")

    assert lifecycle.fail_lost(30) == [lost.pk]
    assert _row(lost).status == "failed"
    assert _row(lost).error == (
        "The worker running this run (gone-w1) was lost: no heartbeat for over 30 s. "
        "The run did not finish; use 'Run again' to retry it."
    )
    assert _row(alive).status == "running"
    assert announced == [lost.pk]


def test_fail_lost_refuses_runs_that_are_not_running(make_run, announced):
    stale = timezone.now() - timedelta(seconds=60)
    finished = make_run(Run.Status.SUCCEEDED, heartbeat_at=stale)

    assert lifecycle.fail_lost(30) == []
    assert _row(finished).status == "succeeded"
    assert announced == []


def test_fail_lost_is_retried_after_a_dropped_connection(make_run, announced, first_update_fails):
    lost = make_run(Run.Status.RUNNING, heartbeat_at=timezone.now() - timedelta(seconds=60))

    assert lifecycle.fail_lost(30) == [lost.pk]
    assert _row(lost).status == "failed"


def test_fail_runs_of_worker_fails_what_that_worker_held_and_announces_it(make_run, announced):
    held = make_run(Run.Status.RUNNING, worker="w1")
    other = make_run(Run.Status.RUNNING, worker="w2")
    queued = make_run()

    assert lifecycle.fail_runs_of_worker("w1", "w1 restarted") == [held.pk]
    assert (_row(held).status, _row(held).error) == ("failed", "w1 restarted")
    assert (_row(other).status, _row(queued).status) == ("running", "queued")
    assert announced == [held.pk]


def test_fail_runs_of_worker_refuses_its_finished_runs(make_run, announced):
    done = make_run(Run.Status.SUCCEEDED, worker="w1")

    assert lifecycle.fail_runs_of_worker("w1", "restarted") == []
    assert _row(done).status == "succeeded"
    assert announced == []


def test_fail_runs_of_worker_is_retried_after_a_dropped_connection(make_run, announced, first_update_fails):
    held = make_run(Run.Status.RUNNING, worker="w1")

    assert lifecycle.fail_runs_of_worker("w1", "restarted") == [held.pk]
    assert _row(held).status == "failed"
