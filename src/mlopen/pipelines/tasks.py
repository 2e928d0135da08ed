"""Celery tasks for pipelines: thin, named, ids only. While a worker builds, it counts as busy and
heartbeats the build (mlopen.runs.signals, around this task)."""

from __future__ import annotations

from celery import shared_task

from mlopen.pipelines import runtimes

BUILD_TASK = "mlopen.build_environment"
RUNTIME_TASK = "mlopen.build_runtime"


@shared_task(name=BUILD_TASK, ignore_result=True, acks_late=True)
def build_environment(*, version_id: int) -> str:
    return runtimes.build_environment(version_id)


@shared_task(name=RUNTIME_TASK, ignore_result=True, acks_late=True)
def build_runtime(*, runtime_id: int) -> str:
    return runtimes.build(runtime_id)
