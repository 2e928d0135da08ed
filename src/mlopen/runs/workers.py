"""Worker liveness: each worker process heartbeats its Worker row (and the run it is executing)
from a background thread, and fails runs whose worker stopped heartbeating (killed, out of
memory, host lost).

Nothing but a heartbeat keeps a run "running": every live worker reaps lost runs on each beat,
and so do /healthz and the run API (see fail_lost_runs), so a run is failed even when the only
worker there was is the one that died.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.db.models import F, TextField, Value
from django.db.models.functions import Coalesce, Concat, NullIf
from django.utils import timezone

from mlopen.runs.models import Run, Worker

log = logging.getLogger(__name__)
# This process's worker name, the run it is executing and until when the heartbeat thread vouches
# for that run (read by the heartbeat thread).
_state: dict = {"name": None, "current_run": None, "vouch_until": None}
# The heartbeat thread keeps a run alive for at most its time limit plus this: an environment build
# (up to 15 minutes) and slack. Past that the run's own loop must be stuck (it enforces the time
# limit itself), so the run is left to be reaped as lost: no run stays running forever.
STUCK_AFTER_LIMIT_SECONDS = 20 * 60


def current_worker_name() -> str:
    return _state["name"] or settings.MLOPEN_WORKER_NAME or f"{socket.gethostname()}-{os.getpid()}"


def live_workers():
    cutoff = timezone.now() - timedelta(seconds=settings.MLOPEN_HEARTBEAT_TIMEOUT)
    return Worker.objects.filter(last_seen__gte=cutoff)


def register(name: str, queues: list[str], sandbox: str) -> None:
    """Record this worker as alive. Runs a previous process of the same name still held are lost."""
    _state["name"] = name
    fail_runs_of_worker(name, reason=f"Worker {name} restarted while this run was running; the run was lost.")
    Worker.objects.update_or_create(name=name, defaults={
        "hostname": socket.gethostname(), "pid": os.getpid(), "queues": queues, "sandbox": sandbox,
        "last_seen": timezone.now(), "current_run": None, "started_at": timezone.now()})


def unregister(name: str) -> None:
    Worker.objects.filter(name=name, pid=os.getpid()).delete()


def heartbeat(name: str, queues: list[str] | None = None, sandbox: str = "") -> None:
    now = timezone.now()
    if Worker.objects.filter(name=name).update(last_seen=now) == 0:
        # The row went away (deleted by an admin, a flushed test database): this worker still lives.
        Worker.objects.update_or_create(name=name, defaults={
            "hostname": socket.gethostname(), "pid": os.getpid(), "queues": queues or [], "sandbox": sandbox,
            "last_seen": now})
    run_id = _state["current_run"]
    if run_id is not None and time.monotonic() < _state["vouch_until"]:
        # From this thread, not the run's own loop: a run still building its environment (or
        # stuck writing its log) is alive as long as its worker is.
        Run.objects.filter(pk=run_id, worker=name, status=Run.Status.RUNNING).update(heartbeat_at=now)


def executing() -> int | None:
    """The run this worker process is executing, if any."""
    return _state["current_run"]


def set_current_run(name: str, run_id: int | None) -> None:
    if run_id is not None:
        limit = Run.objects.filter(pk=run_id).values_list("timeout_seconds", flat=True).first()
        _state["vouch_until"] = time.monotonic() + (limit or settings.MLOPEN_RUN_TIMEOUT) + STUCK_AFTER_LIMIT_SECONDS
    _state["current_run"] = run_id
    Worker.objects.filter(name=name).update(current_run_id=run_id, last_seen=timezone.now())


def fail_runs_of_worker(name: str, reason: str) -> int:
    return Run.objects.filter(status=Run.Status.RUNNING, worker=name).update(
        status=Run.Status.FAILED, finished_at=timezone.now(), error=reason)


def fail_lost_runs() -> int:
    """Fail running runs whose heartbeat stopped longer ago than MLOPEN_HEARTBEAT_TIMEOUT.

    Cheap enough to call on every request that shows a run: one indexed SELECT, and one UPDATE
    only when something was lost (on SQLite an UPDATE takes the write lock even when it matches
    nothing). The UPDATE re-checks the condition, so a run that heartbeats meanwhile is spared.
    """
    timeout = settings.MLOPEN_HEARTBEAT_TIMEOUT
    cutoff = timezone.now() - timedelta(seconds=timeout)
    lost = Run.objects.filter(status=Run.Status.RUNNING, heartbeat_at__lt=cutoff)
    if not lost.exists():
        return 0
    worker = Coalesce(NullIf(F("worker"), Value("")), Value("unknown"))
    count = lost.update(
        status=Run.Status.FAILED, finished_at=timezone.now(),
        error=Concat(Value("The worker running this run ("), worker,
                     Value(f") was lost: no heartbeat for over {timeout:g} s. The run did not finish; "
                           "use 'Run again' to retry it."), output_field=TextField()))
    if count:
        log.warning("marked %d run(s) failed: their worker was lost", count)
    return count


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


class HeartbeatThread(threading.Thread):
    """Keeps the Worker row fresh and reaps lost runs, independent of the task being executed."""

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
            finally:
                close_old_connections()
