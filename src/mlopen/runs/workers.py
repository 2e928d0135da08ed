"""Worker liveness: each worker process heartbeats its Worker row (and the run it is executing)
from a background thread, and fails runs whose worker stopped heartbeating (killed, out of
memory, host lost).

Nothing but a heartbeat keeps a run "running": every live worker reaps lost runs on each beat
and when it starts (see fail_lost_runs; the status changes themselves are in runs.lifecycle).
Pages, the API and /healthz only read: a run whose only worker died stays "running" until a
worker starts again.

The heartbeat thread and its sweep (re-sending the messages the broker lost) are in runs.sweep.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Subquery
from django.utils import timezone

from mlopen.pipelines.environments import BUILD_TIMEOUT_SECONDS
from mlopen.pipelines.models import PipelineVersion
from mlopen.runs import lifecycle
from mlopen.runs.models import Run, Worker
from mlopen_runner import sandbox as runner_sandbox

log = logging.getLogger(__name__)
# This process's worker name, the run it is executing and until when the heartbeat thread vouches
# for that run, the environment build it is running (and until when it vouches for that), and since
# when it has had nothing to do (None while busy). Read by the heartbeat thread.
_state: dict = {
    "name": None,
    "current_run": None,
    "vouch_until": None,
    "current_build": None,
    "build_vouch_until": None,
    "idle_since": None,
    "stop_running_at": None,
}
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
    Worker.objects.update_or_create(
        name=name,
        defaults={
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "queues": queues,
            "sandbox": sandbox,
            "last_seen": timezone.now(),
            "current_run": None,
            "started_at": timezone.now(),
            "idle_since": _state["idle_since"],
        },
    )


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
        Worker.objects.update_or_create(
            name=name,
            defaults={
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "queues": queues or [],
                "sandbox": sandbox,
                "last_seen": now,
                "idle_since": idle_since,
            },
        )
    if run_id is not None and time.monotonic() < _state["vouch_until"]:
        # From this thread, not the run's own loop: a run still building its environment (or
        # stuck writing its log) is alive as long as its worker is.
        lifecycle.heartbeat(run_id, name)
    build_id = _state.get("current_build")
    if build_id is not None and time.monotonic() < _state["build_vouch_until"]:
        PipelineVersion.objects.filter(pk=build_id, env_status=PipelineVersion.EnvStatus.BUILDING).update(
            env_heartbeat_at=now
        )


def begin_shutdown(grace_seconds: float) -> None:
    """The worker was asked to stop (SIGTERM, Ctrl+C): Celery takes no new message, and the run in
    progress gets ``grace_seconds`` to finish before it is stopped (see shutdown_due)."""
    if _state["stop_running_at"] is None:
        _state["stop_running_at"] = time.monotonic() + max(0.0, grace_seconds)


def shutdown_due() -> bool:
    """Whether this worker is stopping and its grace period is over: the run it executes must stop
    now (recorded as stopped by the shutdown), and one not started yet goes back to the queue."""
    stop_at = _state["stop_running_at"]
    return stop_at is not None and time.monotonic() >= stop_at


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


def start_build(version_id: int) -> None:
    """An environment build starts on this worker (runs.signals, around the build task): the worker
    counts as busy (not idle, so the sweep does not read its silence as lost messages), and its
    heartbeat thread keeps the build's env_heartbeat_at fresh, so the build is re-sent only if this
    worker dies (or the build hangs past any limit it has)."""
    # Two uv commands, reading the forms, and waiting for another build of the same requirements.
    limit = 2 * (2 * BUILD_TIMEOUT_SECONDS + settings.MLOPEN_PARAMS_TIMEOUT) + STUCK_AFTER_LIMIT_SECONDS
    _state["build_vouch_until"] = time.monotonic() + limit
    _state["current_build"] = version_id
    _note_busy(True)
    PipelineVersion.objects.filter(pk=version_id, env_status=PipelineVersion.EnvStatus.BUILDING).update(
        env_heartbeat_at=timezone.now()
    )


def end_build() -> None:
    _state["current_build"] = None
    _note_busy(_state.get("current_run") is not None)


def fail_runs_of_worker(name: str, reason: str) -> int:
    return len(lifecycle.fail_runs_of_worker(name, reason))


def fail_lost_runs() -> int:
    """Fail running runs whose heartbeat stopped longer ago than MLOPEN_HEARTBEAT_TIMEOUT (see
    lifecycle.fail_lost); called by every worker when it starts and on each beat."""
    return len(lifecycle.fail_lost(settings.MLOPEN_HEARTBEAT_TIMEOUT))


def idle_horizons(wait: float) -> dict[str, object]:
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
