"""Worker liveness: each worker process heartbeats its Worker row (and the run it is executing)
from a background thread, and fails runs whose worker stopped heartbeating (killed, out of
memory, host lost).

Nothing but a heartbeat keeps a run "running": every live worker reaps lost runs on each beat
and when it starts (see fail_lost_runs; the status changes themselves are in runs.lifecycle).
Pages, the API and /healthz only read: a run whose only worker died stays "running" until a
worker starts again.

Nothing but a message keeps a run "queued" moving: on each beat every live worker also re-sends
the messages the broker lost (see requeue_lost_messages), of queued runs and of environment builds.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import Q, Subquery
from django.utils import timezone

from mlopen.runs import lifecycle
from mlopen.runs.models import Run, Worker
from mlopen_runner import sandbox as runner_sandbox

log = logging.getLogger(__name__)
# This process's worker name, the run it is executing and until when the heartbeat thread vouches
# for that run, the environment build it is running (and until when it vouches for that), and since
# when it has had nothing to do (None while busy). Read by the heartbeat thread.
_state: dict = {"name": None, "current_run": None, "vouch_until": None, "current_build": None,
                "build_vouch_until": None, "idle_since": None}
# The heartbeat thread keeps a run alive for at most its time limit plus this: an environment build
# (up to 15 minutes) and slack. Past that the run's own loop must be stuck (it enforces the time
# limit itself), so the run is left to be reaped as lost: no run stays running forever.
STUCK_AFTER_LIMIT_SECONDS = 20 * 60


def current_worker_name() -> str:
    return _state["name"] or settings.MLOPEN_WORKER_NAME or f"{socket.gethostname()}-{os.getpid()}"


# What Run.sandbox records: the run's pipeline code ran inside bubblewrap, or as a plain process.
SANDBOXED, UNSANDBOXED = "bubblewrap", "none"


def sandbox_of_this_process() -> dict[str, str]:
    """Where this process runs pipeline code: {"kind": SANDBOXED or UNSANDBOXED, "described": the
    Worker row's text, e.g. "process: bwrap is not installed"}. The probe runs once per process."""
    return dict(_sandbox_in_mode(runner_sandbox.mode()))


@functools.cache
def _sandbox_in_mode(mode: str) -> dict[str, str]:
    status = runner_sandbox.sandbox_status()
    reason = status["reason"]
    if status.get("process_limit"):
        reason += f"; process cap: {status['process_limit']}"
    # In "bubblewrap" mode no pipeline code starts outside the sandbox: a launch it cannot sandbox fails.
    sandboxed = mode == "bubblewrap" or status["kind"] == "bubblewrap"
    return {"kind": SANDBOXED if sandboxed else UNSANDBOXED, "described": f"{status['kind']}: {reason}"[:200]}


def live_workers():
    cutoff = timezone.now() - timedelta(seconds=settings.MLOPEN_HEARTBEAT_TIMEOUT)
    return Worker.objects.filter(last_seen__gte=cutoff)


def register(name: str, queues: list[str], sandbox: str) -> None:
    """Record this worker as alive. Runs a previous process of the same name still held are lost."""
    _state["name"] = name
    _state["idle_since"] = timezone.now()
    fail_runs_of_worker(name, reason=f"Worker {name} restarted while this run was running; the run was lost.")
    Worker.objects.update_or_create(name=name, defaults={
        "hostname": socket.gethostname(), "pid": os.getpid(), "queues": queues, "sandbox": sandbox,
        "last_seen": timezone.now(), "current_run": None, "started_at": timezone.now(),
        "idle_since": _state["idle_since"]})


def unregister(name: str) -> None:
    Worker.objects.filter(name=name, pid=os.getpid()).delete()


def heartbeat(name: str, queues: list[str] | None = None, sandbox: str = "") -> None:
    now = timezone.now()
    run_id = _state["current_run"]
    # The run this worker executes, as a subquery: NULL rather than a broken foreign key if the run
    # was deleted meanwhile (a failed heartbeat would make a live worker look dead).
    running = Subquery(Run.objects.filter(pk=run_id).values("pk")) if run_id is not None else None
    # Written with last_seen in one UPDATE: the sweep reads "idle from idle_since to at least last_seen".
    idle_since = _state.get("idle_since")
    if Worker.objects.filter(name=name).update(last_seen=now, current_run=running, idle_since=idle_since) == 0:
        # The row went away (deleted by an admin, a flushed test database): this worker still lives.
        Worker.objects.update_or_create(name=name, defaults={
            "hostname": socket.gethostname(), "pid": os.getpid(), "queues": queues or [], "sandbox": sandbox,
            "last_seen": now, "idle_since": idle_since})
    if run_id is not None and time.monotonic() < _state["vouch_until"]:
        # From this thread, not the run's own loop: a run still building its environment (or
        # stuck writing its log) is alive as long as its worker is.
        lifecycle.heartbeat(run_id, name)
    build_id = _state.get("current_build")
    if build_id is not None and time.monotonic() < _state["build_vouch_until"]:
        from mlopen.pipelines.models import PipelineVersion

        PipelineVersion.objects.filter(pk=build_id, env_status=PipelineVersion.EnvStatus.BUILDING).update(
            env_heartbeat_at=now)


def executing() -> int | None:
    """The run this worker process is executing, if any."""
    return _state["current_run"]


def set_current_run(name: str, run_id: int | None, timeout_seconds: int | None = None) -> None:
    """Note the run this worker process now executes (None: none). No query: this is on every run's
    path; the heartbeat thread writes it to the Worker row (the admin's worker list shows running
    runs from the Run rows themselves, so nothing waits for that)."""
    if run_id is not None:
        limit = timeout_seconds or settings.MLOPEN_RUN_TIMEOUT
        _state["vouch_until"] = time.monotonic() + limit + STUCK_AFTER_LIMIT_SECONDS
    _state["current_run"] = run_id
    _note_busy(run_id is not None or _state.get("current_build") is not None)


def _note_busy(busy: bool) -> None:
    if busy:
        _state["idle_since"] = None
    elif _state.get("idle_since") is None:
        _state["idle_since"] = timezone.now()


@contextmanager
def building(version_id: int):
    """Around an environment build on this worker: the worker counts as busy (not idle, so the
    sweep does not read its silence as lost messages), and its heartbeat thread keeps the build's
    env_heartbeat_at fresh, so the build is re-sent only if this worker dies (or the build hangs
    past any limit it has)."""
    from mlopen.pipelines.environments import BUILD_TIMEOUT_SECONDS
    from mlopen.pipelines.models import PipelineVersion

    # Two uv commands, reading the forms, and waiting for another build of the same requirements.
    limit = 2 * (2 * BUILD_TIMEOUT_SECONDS + settings.MLOPEN_PARAMS_TIMEOUT) + STUCK_AFTER_LIMIT_SECONDS
    _state["build_vouch_until"] = time.monotonic() + limit
    _state["current_build"] = version_id
    _note_busy(True)
    PipelineVersion.objects.filter(pk=version_id, env_status=PipelineVersion.EnvStatus.BUILDING).update(
        env_heartbeat_at=timezone.now())
    try:
        yield
    finally:
        _state["current_build"] = None
        _note_busy(_state.get("current_run") is not None)


def fail_runs_of_worker(name: str, reason: str) -> int:
    return len(lifecycle.fail_runs_of_worker(name, reason))


def fail_lost_runs() -> int:
    """Fail running runs whose heartbeat stopped longer ago than MLOPEN_HEARTBEAT_TIMEOUT (see
    lifecycle.fail_lost); called by every worker when it starts and on each beat."""
    return len(lifecycle.fail_lost(settings.MLOPEN_HEARTBEAT_TIMEOUT))


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


# How many lost messages one sweep re-sends at most, so a beat stays short even after a broker
# lost a long queue (the rest follow on the next beats).
REQUEUE_BATCH = 100


def _idle_horizons(wait: float) -> dict[str, object]:
    """For each queue served by a live idle worker: a time before which any message sent to that
    queue must have been taken, had the broker kept it.

    A worker's heartbeat writes idle_since and last_seen together, so the row says "idle from
    idle_since until at least last_seen". A message sent at S to one of its queues would have been
    taken within moments of max(S, idle_since); if that is ``wait`` seconds before last_seen and
    the run is still queued, the message is gone. Busy workers (running a run or a build) say
    nothing: runs waiting behind them are a backlog, not a loss.
    """
    horizons: dict[str, object] = {}
    rows = live_workers().filter(idle_since__isnull=False).values_list("queues", "idle_since", "last_seen")
    for queues, idle_since, last_seen in rows:
        horizon = last_seen - timedelta(seconds=wait)
        if idle_since > horizon:
            continue  # not idle long enough to tell
        for queue in queues or []:
            if queue not in horizons or horizons[queue] < horizon:
                horizons[queue] = horizon
    return horizons


def _due(sent_field: str, queue_field: str, horizons: dict) -> Q:
    """Never sent (the publish failed), or sent before the horizon of an idle worker of its queue."""
    due = Q(**{f"{sent_field}__isnull": True})
    default = settings.MLOPEN_DEFAULT_QUEUE
    for queue, horizon in horizons.items():
        in_queue = Q(**{queue_field: queue})
        if queue == default:  # a run or pipeline without a queue goes to the default one
            in_queue |= Q(**{queue_field: ""})
        due |= in_queue & Q(**{f"{sent_field}__lt": horizon})
    return due


def _take_due(candidates, sent_field: str, fields: tuple[str, ...]) -> list[tuple]:
    """Stamp the due rows' ``sent_field`` with now and return them; of sweepers racing for a row
    only one gets it: PostgreSQL locks (and skips rows another sweeper holds, re-checking the
    condition on rows it changed meanwhile), SQLite's IMMEDIATE transactions run one at a time."""
    if not candidates.exists():  # no write (SQLite's write lock) when nothing is due, which is nearly always
        return []
    with transaction.atomic():
        rows = list(candidates.select_for_update(skip_locked=True, of=("self",))
                    .order_by("created_at", "pk").values_list("pk", *fields)[:REQUEUE_BATCH])
        if rows:
            candidates.model.objects.filter(pk__in=[row[0] for row in rows]).update(**{sent_field: timezone.now()})
    return rows


def requeue_lost_runs(wait: float | None = None) -> list[int]:
    """Send again the message of queued runs the broker lost; return their ids.

    A run is re-sent when its last message (``enqueued_at``) is older than MLOPEN_REQUEUE_SECONDS
    while a live worker serving its queue has sat idle for as long (see _idle_horizons), or at once
    when it was never sent (``enqueued_at`` empty: the broker was down at submit). Each re-send
    stamps ``enqueued_at``, so a run gets at most one more message per MLOPEN_REQUEUE_SECONDS, and
    none while the workers of its queue are busy: a long backlog is left alone. A duplicate is
    harmless anyway (lifecycle.claim takes a run once).
    """
    from mlopen.runs.tasks import execute_run

    wait = settings.MLOPEN_REQUEUE_SECONDS if wait is None else wait
    if wait <= 0:
        return []
    horizons = _idle_horizons(wait)
    candidates = Run.objects.filter(_due("enqueued_at", "queue", horizons), status=Run.Status.QUEUED)
    rows = _take_due(candidates, "enqueued_at", ("queue", "enqueued_at"))
    sent = _send(rows, lambda pk, queue: execute_run.apply_async(kwargs={"run_id": pk}, queue=queue), "run")
    lost = [pk for pk, _queue, enqueued_at in rows if pk in sent and enqueued_at is not None]
    if lost:
        log.warning("re-sent %d queued run(s) whose message the broker lost (queued over %g s while a worker "
                    "of their queue sat idle): %s", len(lost), wait, ", ".join(map(str, lost)))
    unsent = [pk for pk, _queue, enqueued_at in rows if pk in sent and enqueued_at is None]
    if unsent:
        log.info("sent %d queued run(s) that could not be sent when submitted: %s", len(unsent),
                 ", ".join(map(str, unsent)))
    return sorted(sent)


def requeue_lost_builds(wait: float | None = None) -> list[int]:
    """Send again the build message of environments left "building" without a builder; return the
    versions' ids.

    As for runs, with one more condition: no worker is building it (``env_heartbeat_at``, kept
    fresh by the building worker's heartbeat thread, is older than MLOPEN_HEARTBEAT_TIMEOUT), so a
    build whose worker died is re-sent as well as one whose message was lost. A duplicate build is
    harmless: environments.build_for_version skips a version no longer building, and builds of the
    same requirements on one host wait for each other and reuse the result.
    """
    from mlopen.pipelines.models import PipelineVersion
    from mlopen.pipelines.tasks import build_environment

    wait = settings.MLOPEN_REQUEUE_SECONDS if wait is None else wait
    if wait <= 0:
        return []
    horizons = _idle_horizons(wait)
    silent = timezone.now() - timedelta(seconds=settings.MLOPEN_HEARTBEAT_TIMEOUT)
    candidates = PipelineVersion.objects.filter(
        _due("env_requested_at", "pipeline__queue", horizons),
        Q(env_heartbeat_at__isnull=True) | Q(env_heartbeat_at__lt=silent),
        env_status=PipelineVersion.EnvStatus.BUILDING)
    rows = _take_due(candidates, "env_requested_at", ("pipeline__queue", "env_requested_at"))
    sent = _send(rows, lambda pk, queue: build_environment.apply_async(kwargs={"version_id": pk}, queue=queue),
                 "environment build")
    lost = [pk for pk, _queue, requested_at in rows if pk in sent and requested_at is not None]
    if lost:
        log.warning("re-sent the environment build of %d pipeline version(s) left building with no worker on it: "
                    "%s", len(lost), ", ".join(map(str, lost)))
    unsent = [pk for pk, _queue, requested_at in rows if pk in sent and requested_at is None]
    if unsent:
        log.info("sent the environment build of %d pipeline version(s) that could not be sent at upload: %s",
                 len(unsent), ", ".join(map(str, unsent)))
    return sorted(sent)


def _send(rows: list[tuple], publish, what: str) -> set[int]:
    """Publish each row's message. A broker that is down is logged once and not hammered: the rows
    stay stamped, so they are tried again by a later sweep, once a worker of their queue has sat
    idle for MLOPEN_REQUEUE_SECONDS (which it will, with nothing to take)."""
    sent: set[int] = set()
    failed: list[int] = []
    error = None
    for pk, queue, *_rest in rows:
        try:
            publish(pk, queue or settings.MLOPEN_DEFAULT_QUEUE)
            sent.add(pk)
        except Exception as exc:  # noqa: BLE001 - the broker is down: try the others later, not now
            failed.append(pk)
            error = exc
            break
    if error is not None:
        failed += [row[0] for row in rows if row[0] not in sent and row[0] not in failed]
        log.warning("could not send the %s message of %s (%s: %s); a later sweep tries again", what,
                    ", ".join(map(str, failed)), error.__class__.__name__, error)
    return sent


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
                heartbeat(self.worker_name, self.queues, self.sandbox)
                fail_lost_runs()
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
