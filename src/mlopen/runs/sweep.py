"""What each worker does on every beat, from its heartbeat thread: write the run outcomes it could not
write yet, keep its Worker row fresh, fail runs whose worker died, and re-send the messages the
broker lost.

Nothing but a message keeps a run "queued" moving: on each beat every live worker re-sends the
messages the broker lost (see requeue_lost_messages), of queued runs and (through
pipelines.builds) of environment builds.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from mlopen.core import prepared, resend
from mlopen.pipelines import builds
from mlopen.runs import execution, fairness, lifecycle, workers
from mlopen.runs.models import Run
from mlopen.runs.tasks import execute_run

log = logging.getLogger(__name__)


def cleanup_broker_folder() -> None:
    """The folder broker keeps processed messages; drop those older than an hour."""
    if settings.MLOPEN_BROKER_DIR is None:
        return
    folder = settings.MLOPEN_BROKER_DIR / "processed"
    if not folder.is_dir():
        return
    cutoff = timezone.now().timestamp() - 3600
    for entry in os.scandir(folder):
        try:
            if entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
        except OSError:
            pass


def requeue_lost_runs(wait: float | None = None) -> list[int]:
    """Send again the message of queued runs the broker may have lost; return their ids.

    On age alone, so busy workers cannot starve a lost run: a queued run (nobody holds it: a worker
    that took its message has claimed it) is re-sent when its last message (``enqueued_at``) is
    older than MLOPEN_REQUEUE_SECONDS and older than the time it had waited when that message was
    sent; so the wait doubles at each re-send (after 2, 4, 8... minutes) and a run waiting behind a
    long backlog gets a few duplicates, not one per beat. At once when it was never sent
    (``enqueued_at`` empty: the broker was down at submit, a worker put it back, or its message found
    its user at their running limit), unless its user is still at that limit. Each re-send
    stamps ``enqueued_at``. A duplicate is harmless: lifecycle.claim takes a run once, and a worker
    given a message of a run already taken skips it in a millisecond.
    """
    wait = settings.MLOPEN_REQUEUE_SECONDS if wait is None else wait
    if wait <= 0:
        return []
    now = timezone.now()
    sent_before = now - timedelta(seconds=wait)
    # Two reads of the index of waiting runs' (enqueued_at, created_at) first: on nearly every beat
    # neither finds a run, and the sweep ends here.
    any_unsent = _any_waiting_run(_UNSENT)
    if not any_unsent and not _any_waiting_run(_DUE_AGAIN, sent_before, now):
        return []
    due = Q(pk__in=RawSQL(_waiting_runs_sql(connection.vendor, _DUE_AGAIN), _moments(sent_before, now)))
    if any_unsent:  # (one left unsent after the seek waits for the next beat)
        never_sent = Q(enqueued_at__isnull=True)
        # A run marked unsent because its user was at their running limit (lifecycle.claim_next)
        # waits until the user may start one again, rather than bouncing between broker and worker.
        blocked = fairness.owners_at_running_limit(
            Run.objects.filter(never_sent, status=Run.Status.QUEUED)
            .order_by()
            .values_list("owner_id", flat=True)
            .distinct()
        )
        if blocked:
            never_sent &= ~Q(owner_id__in=blocked)
        due |= never_sent
    candidates = Run.objects.filter(due, status=Run.Status.QUEUED)
    rows = resend.take_due(candidates, "enqueued_at", ("queue", "enqueued_at"))
    sent = resend.send(rows, lambda pk, queue: execute_run.apply_async(kwargs={"run_id": pk}, queue=queue), "run")
    lost = [pk for pk, _queue, enqueued_at in rows if pk in sent and enqueued_at is not None]
    if lost:
        log.warning(
            "re-sent %d queued run(s) whose message is over %g s old (the broker may have lost it): %s",
            len(lost),
            wait,
            ", ".join(map(str, lost)),
        )
    unsent = [pk for pk, _queue, enqueued_at in rows if pk in sent and enqueued_at is None]
    if unsent:
        log.info(
            "sent %d queued run(s) that could not be sent when submitted (or were put back): %s",
            len(unsent),
            ", ".join(map(str, unsent)),
        )
    return sorted(sent)


# What the beat's and the after-run checks ask of waiting runs' enqueued_at.
_UNSENT = "unsent"  # no message: the broker was down at submit, or the run was put back
_DUE_AGAIN = "due again"  # its last message is older than the wait, and than the run had waited then


def _condition_sql(vendor: str, condition: str) -> str:
    """The WHERE clause of ``condition`` after the status; _DUE_AGAIN takes two moments: the wait's
    horizon (now minus the wait), then now. The doubling rule (the run waited less before its last
    message than it has since: ``enqueued_at - created_at < now - enqueued_at``) is in each
    database's own date arithmetic: Django's for SQLite calls a Python function for each row, which
    made a beat with 20 000 runs waiting behind a backlog (messages older than the wait, none due
    again) take 200-220 ms."""
    enqueued_at, created_at = prepared.columns(Run, "enqueued_at", "created_at")
    if condition == _UNSENT:
        return f"{enqueued_at} IS NULL"
    if vendor == "sqlite":  # datetimes are ISO text: julianday reads them, to a few microseconds
        doubled = f"2 * julianday({enqueued_at}) - julianday({created_at}) < julianday(%s)"
    else:
        doubled = f"{enqueued_at} < %s - ({enqueued_at} - {created_at})"
    return f"{enqueued_at} < %s AND {doubled}"


@functools.cache
def _waiting_runs_sql(vendor: str, condition: str) -> str:
    """The ids of the waiting runs that meet ``condition``, read from the partial index of waiting
    runs' (enqueued_at, created_at) (Run.Meta.indexes) alone: reading every waiting run through the
    status index took 10-14 ms with 20 000 waiting (9.9 ms for the beat's sweep on SQLite, 7.6 ms
    on PostgreSQL).

    Written by hand so that the status is a literal, which a partial index needs. SQLite, which
    keeps no statistics here, still preferred the status index, so it is told which one to use.
    """
    run = prepared.quoted(Run._meta.db_table)
    pk, status = prepared.columns(Run, "id", "status")
    hint = prepared.index_hint(vendor, _WAITING_ENQUEUED_INDEX)
    return (
        f"SELECT {pk} FROM {run}{hint} WHERE {status} = '{Run.Status.QUEUED.value}' "
        f"AND {_condition_sql(vendor, condition)}"
    )


@functools.cache
def _waiting_run_sql(vendor: str, condition: str) -> str:
    """One waiting run that meets ``condition``, if any. The ORDER BY is for PostgreSQL's generic
    plan of a prepared statement: not knowing the time, it guesses a third of the rows match and,
    for LIMIT 1, reads the table (3.7 ms); the index gives that order for free."""
    (enqueued_at,) = prepared.columns(Run, "enqueued_at")
    order = f" ORDER BY {enqueued_at}" if condition == _DUE_AGAIN else ""
    return f"{_waiting_runs_sql(vendor, condition)}{order} LIMIT 1"


_WAITING_ENQUEUED_INDEX = "run_waiting_enqueued"  # runs.models.Run.Meta.indexes


def _moments(*moments: datetime) -> list:
    return [connection.ops.adapt_datetimefield_value(value) for value in moments]


def _any_waiting_run(condition: str, *moments: datetime) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(_waiting_run_sql(connection.vendor, condition), _moments(*moments))
        return cursor.fetchone() is not None


def send_unsent_runs() -> list[int]:
    """After a run ended: the sweep of :func:`requeue_lost_runs`, when some queued run has no message
    (its user was at their running limit, or the broker was down when it was submitted); else
    nothing. Messages the broker lost are re-sent by the heartbeat's sweep, on their age."""
    if not _any_waiting_run(_UNSENT):
        return []
    return requeue_lost_runs()


def requeue_lost_builds(wait: float | None = None) -> list[int]:
    """Send again the build message of environments left "building" without a builder (see
    pipelines.builds.requeue_lost_builds); return the versions' ids."""
    wait = settings.MLOPEN_REQUEUE_SECONDS if wait is None else wait
    if wait <= 0:
        return []
    builds.requeue_lost_runtime_builds()
    return builds.requeue_lost_builds(workers.idle_horizons(wait), wait)


def requeue_lost_messages() -> tuple[list[int], list[int]]:
    """The sweep each worker runs on every beat: re-send lost run and build messages."""
    return requeue_lost_runs(), requeue_lost_builds()


class HeartbeatThread(threading.Thread):
    """Keeps the Worker row fresh, reaps lost runs and re-sends lost messages, independent of the
    task being executed."""

    def __init__(self, name: str, queues: list[str], sandbox: str):
        super().__init__(name="mlopen-heartbeat", daemon=True)
        self.worker_name = name
        self.queues = queues
        self.sandbox = sandbox
        self.stopped = threading.Event()

    def run(self) -> None:
        ticks = 0
        while not self.stopped.wait(settings.MLOPEN_HEARTBEAT_INTERVAL):
            try:
                # First the outcomes this worker could not write (the database was away): now that
                # it may be back, before anyone reads the silence of their runs as a lost worker.
                for run_id in execution.pending_outcomes.run_ids():
                    lifecycle.heartbeat(run_id, self.worker_name)
                execution.pending_outcomes.write_due()
            except Exception:  # noqa: BLE001 - the next beat tries again
                log.exception("writing kept run outcomes failed")
            try:
                workers.heartbeat(self.worker_name, self.queues, self.sandbox)
                workers.fail_lost_runs()
                ticks += 1
                if ticks % 60 == 0:
                    cleanup_broker_folder()
            except Exception:  # noqa: BLE001 - a database hiccup must not stop the heartbeat for good
                log.exception("worker heartbeat failed")
            try:
                requeue_lost_messages()
            except Exception:  # logged; tried again on the next beat
                log.exception("re-sending lost messages failed")
            finally:
                close_old_connections()
