"""Hooks into the Celery worker's life: register, heartbeat, unregister."""

from __future__ import annotations

from celery.signals import worker_ready, worker_shutdown

from mlopen.runs import workers

_threads: dict[str, workers.HeartbeatThread] = {}


@worker_ready.connect
def on_worker_ready(sender=None, **kwargs) -> None:
    from mlopen_runner import sandbox_status

    name = workers.current_worker_name()
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values()) if sender else []
    status = sandbox_status()
    workers.register(name, queues, sandbox=status["kind"])
    workers.fail_lost_runs()
    thread = workers.HeartbeatThread(name, queues, status["kind"])
    thread.start()
    _threads[name] = thread


@worker_shutdown.connect
def on_worker_shutdown(**kwargs) -> None:
    for name, thread in list(_threads.items()):
        thread.stopped.set()
        workers.unregister(name)
