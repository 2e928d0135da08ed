"""A run's life, and every change of its status: nothing else writes ``Run.status``.

queued
    ``services.submit_run`` creates the row (status defaults to queued) and sends its message once
    committed. A user may cancel it now: :func:`cancel_queued` ends it as cancelled.
queued → running
    A worker that receives a message of the run's queue calls :func:`claim_next`
    (``execution.execute_run``), which takes the next run in fair order (``fairness``: users take
    turns), not necessarily the one the message was sent for; each run is taken once, whoever
    races for it, and a message that finds nothing to take is skipped. A message the broker lost is
    sent again on age alone (``sweep.requeue_lost_runs``), which changes no status.
running → queued, before the pipeline started
    :func:`put_back`, once: the database went away while the worker prepared the run, or the worker
    is shutting down. The sweep sends it again at once.
running
    While the pipeline works, its recorder writes the log, progress and heartbeat every half second
    (:func:`record_progress`, ``execution.RunRecorder.flush``), and the worker's heartbeat thread
    vouches for the run even when that loop is silent (:func:`heartbeat`, ``workers.heartbeat``). A
    user's cancel only raises a flag (:func:`request_cancel`) that the recorder sees at its next flush.
running → succeeded / failed / cancelled
    The worker writes the outcome with :func:`finish` (``execution.finish``), log and metrics in the
    same transaction, trying for a minute through a lost database; then it keeps the outcome and
    its heartbeat thread writes it once it can (``execution.pending_outcomes``). A worker told to
    stop gives its run MLOPEN_SHUTDOWN_GRACE_SECONDS, then stops it as cancelled, log kept.
running → failed, without its worker
    A worker that stopped heartbeating (killed, out of memory, host lost) cannot finish its run.
    Every live worker's heartbeat thread calls :func:`fail_lost` on each beat (``workers.fail_lost_runs``),
    and a worker that restarts under the same name fails the runs its previous process held
    (:func:`fail_runs_of_worker`, ``workers.register``). Pages and the API only read.

Every function is one conditional UPDATE (``filter(pk=..., status=...).update(...) == 1``): a run
moves only from the status the caller saw, so two writers can never both win. Every way a run ends
sends ``waiting.announce_finished``, so a waiting request answers at once, and
``events.run_finished``, so the apps above (webhooks) hear of it. Each write is retried
through a dropped connection or a busy database (:func:`_retrying`, after closing the broken one),
for as long as that write is worth waiting for (see the PATIENCE constants).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from mlopen.core import prepared
from mlopen.pipelines import registry
from mlopen.pipelines.models import ModelAlias, TrainedModel
from mlopen.runs import events, fairness, logs, waiting
from mlopen.runs.models import Run, RunMetric, RunResult

log = logging.getLogger(__name__)

# How long each kind of write keeps trying through a lost connection or a busy (locked) database,
# pausing 0.1 s, 0.2 s, 0.4 s... up to MAX_PAUSE_SECONDS between tries. A short blip (a restarted
# database, a proxy's idle timeout, connections terminated by an administrator) is healed by
# reconnecting; the patience says how much a write is worth waiting for:
# - the outcome of a run that finished is the most precious write of all: a minute, and then the
#   worker keeps it and tries again on every beat (execution.PendingFinishes);
# - a claim: the worker has nothing else to do, and giving up leaves the run queued for the sweep;
# - a flush (log, progress) tries once more only: its next flush, half a second later, is its
#   retry, and a pipeline's own loop should not wait on the database;
# - anything else (a cancel, a heartbeat, reaping lost runs) a few seconds, then the caller's error.
FINISH_PATIENCE_SECONDS = 60.0
CLAIM_PATIENCE_SECONDS = 30.0
DEFAULT_PATIENCE_SECONDS = 3.0
FIRST_PAUSE_SECONDS = 0.1
MAX_PAUSE_SECONDS = 2.0
FLUSH_TRIES = 2

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """A database error that trying again may heal: a lost connection, a locked or busy database, a
    full disk (something else may free space), as opposed to a query the database refuses."""
    return isinstance(exc, OperationalError | InterfaceError)


def _retrying(write: Callable[[], T], patience: float = DEFAULT_PATIENCE_SECONDS, tries: int | None = None) -> T:
    """``write()``, tried again after a transient database error (see :func:`is_transient`) for up to
    ``patience`` seconds (or ``tries`` times), pausing longer each time.

    Outside a transaction the broken connection is closed first, so the next try reconnects;
    inside one Django cannot reconnect (the transaction is gone with it), so the try is repeated as is.
    """
    deadline = time.monotonic() + patience
    pause = FIRST_PAUSE_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            out_of_tries = tries is not None and attempt >= tries
            if out_of_tries or time.monotonic() + pause > deadline:
                raise
            log.warning(
                "database write failed (%s: %s); trying again in %.1f s (try %d)",
                exc.__class__.__name__,
                exc,
                pause,
                attempt + 1,
            )
            if not connection.in_atomic_block:
                connection.close()
            time.sleep(pause)
            pause = min(MAX_PAUSE_SECONDS, pause * 2)


def retry_transient(write: Callable[[], T], patience: float = DEFAULT_PATIENCE_SECONDS) -> T:
    """For a write on a run's path that is not a change of its status (storing a trained model), or
    a read that starts one (a worker's first query of a task): the same patience with a lost
    connection as the status changes here."""
    return _retrying(write, patience=patience)


def _announce(run_ids: list[int]) -> None:
    for run_id in run_ids:
        waiting.announce_finished(run_id)
        events.send_run_finished(run_id)


def claim(run_id: int, worker_name: str, sandbox: str) -> Run | None:
    """queued → running: take this run for this worker; None when another worker (or a cancel) was first.

    One transaction takes the run (a conditional UPDATE that records where it runs, ``sandbox``, and
    gives a `run` the pipeline's current trained model) and reads the row back for the worker: a
    connection lost in between rolls both back, so the run is never left "running" with nobody
    executing it. Tried for up to CLAIM_PATIENCE_SECONDS; if the database stays away the caller's
    error leaves the run queued, and the sweep sends its message again.
    """

    def take() -> Run | None:
        with transaction.atomic():
            return _take(run_id, worker_name, sandbox)

    return _retrying(take, patience=CLAIM_PATIENCE_SECONDS)


def claim_next(queue: str, worker_name: str, sandbox: str) -> Run | None:
    """queued → running: take the next run of ``queue`` in fair order (``fairness``: users take
    turns, each user's oldest run first, a user at their running limit passed over); None when
    there is none to take.

    As :func:`claim`, one transaction per try. On PostgreSQL it locks the chosen user's row first,
    so two workers cannot both start that user's last allowed run, and takes their oldest run
    nobody holds locked; when every one is locked (a label edit or the sweep's stamp holds a row for
    a moment) it waits for the lock rather than spend the message. SQLite's IMMEDIATE transactions
    run one at a time. When runs wait but every one of
    their users is at the limit, the message that found them is spent: one of those runs is marked
    unsent (``enqueued_at`` empty), and the sweep sends it again once its user may start a run.
    """

    def take() -> Run | None:
        with transaction.atomic():
            free, blocked = fairness.owners_in_turn(queue)
            for owner_id in free:
                if connection.features.has_select_for_update and fairness.lock_and_check_running_limit(owner_id):
                    continue  # another worker started this user's last allowed run meanwhile
                oldest = fairness.oldest_waiting(queue, owner_id, skip_locked=True)
                if oldest is None and connection.features.has_select_for_update:
                    # Every waiting run of this user is locked. Not always by a worker's claim: a
                    # label edit or the sweep's stamp holds a run's row for a moment, and skipping
                    # it would spend this message and leave the run to the sweep, minutes later.
                    # So wait for that lock; a run another worker took no longer matches once free.
                    oldest = fairness.oldest_waiting(queue, owner_id, skip_locked=False)
                if oldest is not None:
                    run = _take(oldest, worker_name, sandbox)
                    if run is not None:
                        return run
            if blocked:
                parked = fairness.waiting_on_queue(queue).filter(owner_id=blocked[0], enqueued_at__isnull=False)
                first = parked.order_by("created_at", "pk").values_list("pk", flat=True).first()
                if first is not None:
                    Run.objects.filter(pk=first, status=Run.Status.QUEUED).update(enqueued_at=None)
            return None

    return _retrying(take, patience=CLAIM_PATIENCE_SECONDS)


def _take(run_id: int, worker_name: str, sandbox: str) -> Run | None:
    """The claim's UPDATE and read-back, inside the caller's transaction."""
    if _take_statement(run_id, worker_name, sandbox) != 1:
        return None
    return _TAKEN_RUN.first(run_id=run_id)


# The claimed run with what the worker needs of it, compiled once (compiling this five-join query
# cost ~1.5 ms of every claim).
_TAKEN_RUN = prepared.Compiled(
    lambda run_id: (
        Run.objects.select_related("pipeline", "version", "version__runtime", "input", "trained_model")
        .defer("version__runtime__lock", "version__runtime__build_log")  # long, rarely wanted
        .filter(pk=run_id)
        .order_by()[:1]
    ),
    run_id=-2_000_000_123,  # a stand-in: within every integer column's range, never a real id
)


def _take_statement(run_id: int, worker_name: str, sandbox: str) -> int:
    """queued → running in one UPDATE (see _take_sql); how many rows it changed (0 or 1)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _take_sql(connection.vendor),
            {
                "running": Run.Status.RUNNING,
                "queued": Run.Status.QUEUED,
                "worker": worker_name,
                "now": connection.ops.adapt_datetimefield_value(timezone.now()),
                "sandbox": sandbox,
                "run_kind": Run.Kind.RUN,
                "production": registry.PRODUCTION,
                "pk": run_id,
            },
        )
        return cursor.rowcount


@functools.cache
def _take_sql(vendor: str) -> str:
    """The claim's UPDATE, written once per process (building it with the ORM cost ~3 ms a run).

    A run that named no model takes the pipeline's production alias's model, else its newest
    (mlopen.pipelines.registry.default_model), as they are now: a training or a promotion since it
    was submitted counts. A run that named one keeps it. Every SET sees the row as it was.
    """
    q = prepared.quoted
    run, alias, model = (q(m._meta.db_table) for m in (Run, ModelAlias, TrainedModel))
    pk, status, worker, started, beat, attempt, sandbox, kind, requested, pipeline, trained, alias_name = (
        prepared.columns(
            Run,
            "id",
            "status",
            "worker",
            "started_at",
            "heartbeat_at",
            "attempt",
            "sandbox",
            "kind",
            "model_requested",
            "pipeline",
            "trained_model",
            "model_alias",
        )
    )
    alias_pipeline, alias_label, alias_model = prepared.columns(ModelAlias, "pipeline", "name", "model")
    model_pk, model_pipeline, model_number = prepared.columns(TrainedModel, "id", "pipeline", "number")
    production = f"FROM {alias} a WHERE a.{alias_pipeline} = {run}.{pipeline} AND a.{alias_label} = %(production)s"
    chooses = f"{run}.{kind} = %(run_kind)s AND {run}.{requested} = ''"
    newest = (
        f"SELECT m.{model_pk} FROM {model} m WHERE m.{model_pipeline} = {run}.{pipeline} "
        f"ORDER BY m.{model_number} DESC LIMIT 1"
    )
    return (
        f"UPDATE {run} SET {status} = %(running)s, {worker} = %(worker)s, {started} = %(now)s, "
        f"{beat} = %(now)s, {attempt} = {run}.{attempt} + 1, {sandbox} = %(sandbox)s, "
        f"{trained} = CASE WHEN {chooses} THEN COALESCE((SELECT a.{alias_model} {production} LIMIT 1), "
        f"({newest}), {run}.{trained}) ELSE {run}.{trained} END, "
        f"{alias_name} = CASE WHEN {chooses} THEN (CASE WHEN EXISTS (SELECT 1 {production}) "
        f"THEN %(production)s ELSE '' END) ELSE {run}.{alias_name} END "
        f"WHERE {run}.{pk} = %(pk)s AND {run}.{status} = %(queued)s"
    )


def put_back(run_id: int, worker_name: str, reason: str) -> bool:
    """running → queued, for a run whose pipeline never started on this worker (the database went
    away while the worker prepared it, or the worker is shutting down): it is sent again at once by
    the sweep (``enqueued_at`` empty). Only once: a run already claimed twice is failed with
    ``reason`` instead, so a fault that always strikes cannot keep it cycling. False when the run
    was no longer this worker's running run."""
    note = f"mlopen: {reason}; the run goes back to the queue.\n"

    def write() -> bool:
        mine = Run.objects.filter(pk=run_id, worker=worker_name, status=Run.Status.RUNNING)
        with transaction.atomic():
            if mine.filter(attempt__lte=1).update(
                status=Run.Status.QUEUED,
                worker="",
                started_at=None,
                heartbeat_at=None,
                enqueued_at=None,
            ):
                logs.append(logs.next_chunk(run_id, note))
                return True
        return bool(
            mine.update(status=Run.Status.FAILED, finished_at=timezone.now(), error=f"{reason} (for the second time).")
        ) and _announced(run_id)

    return _retrying(write, patience=CLAIM_PATIENCE_SECONDS)


def _announced(run_id: int) -> bool:
    _announce([run_id])
    return True


def record_progress(
    run_id: int, metrics: list[RunMetric] | None = None, log_chunk: logs.Chunk | None = None, **fields
) -> bool:
    """running: write a running run's heartbeat (and progress, new metrics, the log's new chunk);
    False when it is no longer running (finished, failed as lost, deleted), and then nothing is written."""

    def write() -> bool:
        with transaction.atomic():
            still_running = (
                Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).update(heartbeat_at=timezone.now(), **fields)
                == 1
            )
            if still_running and metrics:
                RunMetric.objects.bulk_create(metrics)
            if still_running:
                logs.append(log_chunk)
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


def finish(
    run_id: int,
    status: str,
    metrics: list[RunMetric] | None = None,
    patience: float = FINISH_PATIENCE_SECONDS,
    log_chunk: logs.Chunk | None = None,
    stored_result: RunResult | None = None,
    **fields,
) -> bool:
    """running → succeeded, failed or cancelled, as its worker saw it end; ``fields`` (error,
    result, peak memory...), ``metrics``, the log's last chunk and a result kept in the database
    (``stored_result``, runs.results.keep) are stored in the same transaction. False when the run
    was no longer running (failed as lost meanwhile, say): then nothing is written.

    Tried for ``patience`` seconds through transient errors (then the error reaches the caller, who
    keeps the outcome and tries again later: execution.PendingFinishes)."""
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
            if done and stored_result is not None:
                stored_result.save(force_insert=True)
            if done:
                logs.append(log_chunk)
        return done

    if not _retrying(write, patience=patience):
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
            lambda run_id=run_id, worker=worker: (  # type: ignore[misc]  # mypy infers no lambda with defaults
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
