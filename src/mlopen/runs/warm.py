"""Warm runs: whether a run goes to a warm process (mlopen_runner.warm_pool) or a fresh child.

Only `run` jobs go warm; training is always cold, and a successful training stops this worker's
warm processes of that pipeline (their model is now old; other workers notice on their next run,
whose key then names the new model). The pool belongs to the worker process and is shut down
with it (see mlopen.runs.signals). MLOPEN_WARM_RUNS=false runs everything cold.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from django.conf import settings

from mlopen.runs.models import Run
from mlopen_runner import Job, Outcome
from mlopen_runner import execute as execute_cold
from mlopen_runner.warm_pool import WarmPool

if TYPE_CHECKING:
    from mlopen_runner import Callbacks

_pool_lock = threading.Lock()
_pool = None


def execute(run: Run, job: Job, callbacks: Callbacks) -> Outcome:
    """Execute `job` for `run`, warm when it can be; the Outcome is the same either way."""
    if run.kind != Run.Kind.RUN or not settings.MLOPEN_WARM_RUNS:
        outcome = execute_cold(job, callbacks)
        if run.kind == Run.Kind.TRAIN and outcome.status == "succeeded":
            forget_pipeline(run.pipeline_id)
        return outcome
    # The owner is part of the key: a warm process serves one user's runs only, so module state a
    # pipeline keeps between runs never carries one user's input into another user's run.
    key = (run.owner_id, run.version_id, run.trained_model_id, job.python, job.allow_network, job.memory_mb)
    # One family per pipeline and user: a run stops its user's processes of an older version or
    # model of the pipeline, never another user's.
    family = (_family(run.pipeline_id), run.owner_id)
    return pool().execute(job, callbacks, key=key, family=family, label=f"run {run.pk}")


def pool() -> WarmPool:
    """This worker's pool, created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WarmPool(
                settings.MLOPEN_WORK_DIR / "warm" / f"worker-{os.getpid()}",
                max_processes=settings.MLOPEN_WARM_MAX,
                idle_seconds=settings.MLOPEN_WARM_IDLE_SECONDS,
            )
        return _pool


def forget_pipeline(pipeline_id: int) -> None:
    if _pool is not None:
        stale = _family(pipeline_id)
        _pool.forget(lambda family: isinstance(family, tuple) and family[0] == stale)


def _family(pipeline_id: int) -> str:
    return f"pipeline {pipeline_id}"


def shutdown() -> None:
    """Stop every warm process of this worker (worker shutdown)."""
    global _pool
    with _pool_lock:
        current, _pool = _pool, None
    if current is not None:
        current.shutdown()
