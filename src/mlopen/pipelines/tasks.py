"""Celery tasks for pipelines: thin, named, ids only."""

from __future__ import annotations

from celery import shared_task

from mlopen.pipelines import environments


@shared_task(name="mlopen.build_environment", ignore_result=True, acks_late=True)
def build_environment(*, version_id: int) -> str:
    from mlopen.runs import workers

    with workers.building(version_id):  # busy meanwhile, and the build heartbeats with the worker
        return environments.build_for_version(version_id)
