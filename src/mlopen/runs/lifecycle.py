"""A run's life, and every change of its status: nothing else writes ``Run.status``.

queued
    ``services.submit_run`` creates the row (status defaults to queued) and sends its message once
    committed. A user may cancel it now: :func:`cancel_queued` ends it as cancelled.
queued → running
    A worker that receives the message calls :func:`claim` (``execution.execute_run``). Of several
    workers given the same message only one wins; the others skip it.
running
    While the pipeline works, its recorder writes the log, progress and heartbeat every half second
    (:func:`record_progress`, ``execution.RunRecorder.flush``), and the worker's heartbeat thread
    vouches for the run even when that loop is silent (:func:`heartbeat`, ``workers.heartbeat``). A
    user's cancel only raises a flag (:func:`request_cancel`) that the recorder sees at its next flush.
running → succeeded / failed / cancelled
    The worker writes the outcome with :func:`finish` (``execution.finish``), log and metrics in the
    same transaction.
running → failed, without its worker
    A worker that stopped heartbeating (killed, out of memory, host lost) cannot finish its run.
    Every live worker's heartbeat thread calls :func:`fail_lost` on each beat (``workers.fail_lost_runs``),
    and a worker that restarts under the same name fails the runs its previous process held
    (:func:`fail_runs_of_worker`, ``workers.register``). Pages and the API only read.

Every function is one conditional UPDATE (``filter(pk=..., status=...).update(...) == 1``): a run
moves only from the status the caller saw, so two writers can never both win. Every way a run ends
sends ``waiting.announce_finished``, so a waiting request answers at once. Each write is retried a
few times on a dropped database connection (:func:`_retrying`), after closing the broken one.
Re-sending a lost message (``sweep.requeue_lost_runs``) changes no status and is not here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Case, F, OuterRef, Subquery, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from mlopen.pipelines.models import TrainedModel
from mlopen.runs import waiting
from mlopen.runs.models import Run, RunMetric

log = logging.getLogger(__name__)

# A dropped connection (database restarted, a proxy's idle timeout) is healed by reconnecting; a
# database that is down for longer than these ~1.5 s is the caller's problem.
RETRY_TRIES = 5
RETRY_FIRST_PAUSE_SECONDS = 0.1
# The recorder's flush tries once more only: its next flush, half a second later, is its retry,
# and a pipeline's own loop should not sleep on the database.
FLUSH_TRIES = 2

T = TypeVar("T")


def _retrying(write: Callable[[], T], tries: int = RETRY_TRIES) -> T:
    """``write()``, tried again after an OperationalError or InterfaceError (a lost connection).

    Outside a transaction the broken connection is closed first, so the next try reconnects;
    inside one Django cannot reconnect (the transaction is gone with it), so the try is repeated as is.
    """
    pause = RETRY_FIRST_PAUSE_SECONDS
    for attempt in range(1, tries + 1):
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            if attempt == tries:
                raise
            log.warning(
                "database write failed (%s: %s); trying again in %.1f s (%d of %d)",
                exc.__class__.__name__,
                exc,
                pause,
                attempt + 1,
                tries,
            )
            if not connection.in_atomic_block:
                connection.close()
            time.sleep(pause)
            pause *= 2
    raise AssertionError("unreachable")  # the loop returns or raises


def _announce(run_ids: list[int]) -> None:
    for run_id in run_ids:
        waiting.announce_finished(run_id)


def claim(run_id: int, worker_name: str, sandbox: str) -> Run | None:
    """queued → running: take the run for this worker; None when another worker (or a cancel) was first.

    One UPDATE (one commit) takes the run, records where it runs (``sandbox``) and gives a `run`
    the pipeline's current trained model; then the row is read back for the worker.
    """
    now = timezone.now()
    current_model = TrainedModel.objects.filter(pipeline=OuterRef("pipeline")).order_by("-number").values("pk")[:1]
    taken = _retrying(
        lambda: Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).update(
            status=Run.Status.RUNNING,
            worker=worker_name,
            started_at=now,
            heartbeat_at=now,
            attempt=F("attempt") + 1,
            sandbox=sandbox,
            trained_model=Case(
                When(kind=Run.Kind.RUN, then=Coalesce(Subquery(current_model), F("trained_model"))),
                default=F("trained_model"),
            ),
        )
    )
    if taken != 1:
        return None
    return Run.objects.select_related("pipeline", "version", "input", "trained_model").get(pk=run_id)


def record_progress(run_id: int, metrics: list[RunMetric] | None = None, **fields) -> bool:
    """running: write a running run's heartbeat (and log, progress, new metrics); False when it is
    no longer running (finished, failed as lost, deleted), and then nothing is written."""

    def write() -> bool:
        with transaction.atomic():
            still_running = (
                Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).update(heartbeat_at=timezone.now(), **fields)
                == 1
            )
            if still_running and metrics:
                RunMetric.objects.bulk_create(metrics)
        return still_running

    return _retrying(write, tries=FLUSH_TRIES)


def heartbeat(run_id: int, worker_name: str) -> bool:
    """running: the worker's heartbeat thread vouches for the run it executes; False when that run
    is no longer running on this worker."""
    return _retrying(
        lambda: (
            Run.objects.filter(pk=run_id, worker=worker_name, status=Run.Status.RUNNING).update(
                heartbeat_at=timezone.now()
            )
            == 1
        )
    )


def finish(run_id: int, status: str, metrics: list[RunMetric] | None = None, **fields) -> bool:
    """running → succeeded, failed or cancelled, as its worker saw it end; ``fields`` (error, log,
    result, peak memory...) and ``metrics`` are stored in the same transaction. False when the run
    was no longer running (failed as lost meanwhile, say): then nothing is written."""
    if status not in Run.FINISHED:
        raise ValueError(f"a run cannot finish as {status!r}")

    def write() -> bool:
        with transaction.atomic():
            done = (
                Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).update(
                    status=status, finished_at=timezone.now(), **fields
                )
                == 1
            )
            if done and metrics:
                RunMetric.objects.bulk_create(metrics)
        return done

    if not _retrying(write):
        log.warning("run %s was no longer running when it finished as %s", run_id, status)
        return False
    _announce([run_id])
    return True


def cancel_queued(run: Run) -> bool:
    """queued → cancelled, before any worker took it; False when it was no longer queued."""
    if not _retrying(
        lambda: (
            Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
                status=Run.Status.CANCELLED,
                finished_at=timezone.now(),
                error="Cancelled before it started.",
                cancel_requested=True,
            )
            == 1
        )
    ):
        return False
    _announce([run.pk])
    return True


def request_cancel(run: Run) -> bool:
    """running: ask the worker to stop it (it finishes as cancelled at its next flush); False when
    it was not running."""
    return _retrying(
        lambda: Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(cancel_requested=True) == 1
    )


def _fail_running(candidates, error_of: Callable[[str], str]) -> list[int]:
    """running → failed for each of ``candidates`` (a queryset of running runs) still matching it
    when its own UPDATE runs; returns the ids failed, each announced."""
    failed = []
    for run_id, worker in list(candidates.values_list("pk", "worker")):
        if _retrying(
            lambda run_id=run_id, worker=worker: (
                candidates.filter(pk=run_id, worker=worker).update(
                    status=Run.Status.FAILED, finished_at=timezone.now(), error=error_of(worker)
                )
                == 1
            )
        ):
            failed.append(run_id)
    _announce(failed)
    return failed


def fail_lost(timeout_seconds: float) -> list[int]:
    """running → failed for runs whose heartbeat is older than ``timeout_seconds``: their worker is gone.

    One indexed SELECT, and UPDATEs only when something was lost (on SQLite an UPDATE takes the
    write lock even when it matches nothing). Each UPDATE re-checks the heartbeat, so a run that
    heartbeats meanwhile is spared.
    """
    cutoff = timezone.now() - timedelta(seconds=timeout_seconds)
    lost = Run.objects.filter(status=Run.Status.RUNNING, heartbeat_at__lt=cutoff)
    failed = _fail_running(
        lost,
        lambda worker: (
            f"The worker running this run ({worker or 'unknown'}) was lost: no heartbeat for over "
            f"{timeout_seconds:g} s. The run did not finish; use 'Run again' to retry it."
        ),
    )
    if failed:
        log.warning("marked %d run(s) failed: their worker was lost", len(failed))
    return failed


def fail_runs_of_worker(worker_name: str, reason: str) -> list[int]:
    """running → failed for the runs a worker of this name held: a new process of it started, so
    the old one (and what it ran) is gone."""
    return _fail_running(Run.objects.filter(status=Run.Status.RUNNING, worker=worker_name), lambda worker: reason)
