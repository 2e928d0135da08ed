"""Celery tasks: thin, named, ids only. The work happens in mlopen.runs.execution."""

from __future__ import annotations

from celery import shared_task

from mlopen.runs import execution, retention, workers

RUN_TASK = "mlopen.execute_run"


@shared_task(name=RUN_TASK, ignore_result=True, acks_late=True)
def execute_run(*, run_id: int) -> str:
    return execution.execute_run(run_id, worker_name=workers.current_worker_name())


@shared_task(name="mlopen.prune", ignore_result=True)
def prune() -> str:
    """Sent by celery beat (`mlopen serve`) every MLOPEN_PRUNE_INTERVAL_HOURS: retention's deletions."""
    return retention.prune().describe()
