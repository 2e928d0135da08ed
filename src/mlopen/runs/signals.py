"""Hooks into the Celery worker's life: register, heartbeat, unregister, stop warm processes."""

from __future__ import annotations

from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown
from django.db import close_old_connections

from mlopen.runs import warm, workers

_threads: dict[str, workers.HeartbeatThread] = {}


@worker_ready.connect
def on_worker_ready(sender=None, **kwargs) -> None:
    from mlopen_runner import sandbox_status

    name = workers.current_worker_name()
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values()) if sender else []
    status = sandbox_status()
    # The kind and why (e.g. "process: bwrap is not installed"), so the admin's Worker list says
    # which hosts run pipelines without a sandbox.
    sandbox = f"{status['kind']}: {status['reason']}"[:200]
    workers.register(name, queues, sandbox=sandbox)
    workers.fail_lost_runs()
    thread = workers.HeartbeatThread(name, queues, sandbox)
    thread.start()
    _threads[name] = thread


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
