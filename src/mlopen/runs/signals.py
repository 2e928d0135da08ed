"""Hooks into the Celery worker's life: register, heartbeat, unregister, stop warm processes."""

from __future__ import annotations

import logging

from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from django.conf import settings
from django.db import close_old_connections
from django.dispatch import receiver

from mlopen.pipelines import runtimes
from mlopen.pipelines.tasks import BUILD_TASK
from mlopen.runs import services, sweep, warm, workers
from mlopen.runs.tasks import RUN_TASK
from mlopen_runner import sandbox as runner_sandbox

log = logging.getLogger(__name__)
_threads: dict[str, sweep.HeartbeatThread] = {}
# `mlopen worker` exits with this when the sandbox it must use cannot be made (sysexits' EX_CONFIG):
# `mlopen serve` does not restart a worker that exits so.
EXIT_SANDBOX_UNAVAILABLE = 78


@worker_init.connect
def refuse_to_start_without_the_sandbox(**kwargs) -> None:
    """Fail closed: with MLOPEN_SANDBOX=bubblewrap, a worker whose host cannot create the sandbox
    stops here, before it connects to the queue, so it never takes a run (however it was started:
    `mlopen worker` checks first, this covers `celery worker` too)."""
    try:
        runner_sandbox.require()
    except runner_sandbox.SandboxUnavailable as exc:
        log.critical("worker refuses to start: %s", exc)
        raise SystemExit(EXIT_SANDBOX_UNAVAILABLE) from None  # Celery's signals swallow any Exception


@worker_ready.connect
def on_worker_ready(sender=None, **kwargs) -> None:
    name = workers.current_worker_name()
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values()) if sender else []
    # The kind and why (e.g. "process: bwrap is not installed"), so the admin's Worker list and
    # /healthz say which workers run pipelines without a sandbox.
    sandbox = workers.sandbox_of_this_process()["described"]
    workers.register(name, queues, sandbox=sandbox)
    workers.fail_lost_runs()
    thread = sweep.HeartbeatThread(name, queues, sandbox)
    thread.start()
    _threads[name] = thread
    warm.preheat()  # blank processes start importing now, in the background, before the first run


@worker_shutting_down.connect
def start_the_grace_period(**kwargs) -> None:
    """Sent from Celery's SIGTERM/SIGINT handler: Celery's warm shutdown waits for the task in
    progress however long it takes, so the run gets MLOPEN_SHUTDOWN_GRACE_SECONDS, then stops."""
    grace = settings.MLOPEN_SHUTDOWN_GRACE_SECONDS
    workers.begin_shutdown(grace)
    if workers.executing() is not None:
        log.warning("shutting down: run %s gets up to %g s to finish", workers.executing(), grace)


@worker_shutdown.connect
def on_worker_shutdown(**kwargs) -> None:
    for name, thread in list(_threads.items()):
        thread.stopped.set()
        workers.unregister(name)
    warm.shutdown()


@task_prerun.connect
@task_postrun.connect
def around_task(**kwargs) -> None:
    # What Django does around a request: drop a connection that broke or outlived CONN_MAX_AGE
    # (SQLite: always), keep a healthy PostgreSQL one for the next run (settings.CELERY_DB_REUSE_MAX).
    close_old_connections()


@task_prerun.connect
def build_started(sender=None, kwargs=None, **_) -> None:
    """An environment build counts as this worker's work: busy, and heartbeated (workers.start_build)."""
    if getattr(sender, "name", None) == BUILD_TASK and kwargs and "version_id" in kwargs:
        workers.start_build(kwargs["version_id"])


@task_postrun.connect
def build_ended(sender=None, **_) -> None:
    if getattr(sender, "name", None) == BUILD_TASK:
        workers.end_build()


@task_postrun.connect
def run_ended(sender=None, **_) -> None:
    """A run ended on this worker, so its user may start another: send at once the messages spent
    while they were at their running limit (the heartbeat's sweep would, a beat later)."""
    if getattr(sender, "name", None) == RUN_TASK:
        try:
            sweep.send_unsent_runs()
        except Exception:  # noqa: BLE001 - logged; the heartbeat's sweep tries again
            log.exception("sending runs that waited for their user's running limit failed")


@receiver(runtimes.settled)
def runtime_settled(runtime_id: int, **_) -> None:
    """A runtime's build ended: the runs that waited for it, queued, go to their workers."""
    released = services.release_waiting_runs(runtime_id)
    if released:
        log.info("runtime %s built: sent %d run(s) that waited for it", runtime_id, len(released))
