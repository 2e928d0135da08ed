"""Celery tasks: thin, named, ids only. The work happens in mlopen.runs.execution."""

from __future__ import annotations

from celery import shared_task

from mlopen.runs import execution, workers

RUN_TASK = "mlopen.execute_run"


@shared_task(name=RUN_TASK, ignore_result=True, acks_late=True)
def execute_run(*, run_id: int) -> str:
    return execution.execute_run(run_id, worker_name=workers.current_worker_name())
