"""Warm runs: whether a run goes to a warm process (mlopen_runner.warm_pool) or a fresh child.

Only `run` jobs go warm; training is always cold, and a successful training stops this worker's
warm processes of that pipeline (their model is now old; other workers notice on their next run,
whose key then names the new model). The pool belongs to the worker process and is shut down
with it (see mlopen.runs.signals). MLOPEN_WARM_RUNS=false runs everything cold.

Cold or warm, a run with no warm process of its own takes a *blank* process when the worker has
one (mlopen_runner.preimport): MLOPEN_PREIMPORT_POOL of them per runtime (default 1; 0 turns them
off), with MLOPEN_PREIMPORT_MODULES already imported. The worker starts them for the default
runtime when it is ready (preheat) and for each runtime it has run since. With warm runs off, the
taken process serves its one run and stops.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from django.conf import settings

from mlopen.pipelines import environments, runtimes
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
    if run.kind != Run.Kind.RUN:
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
    return pool().execute(job, callbacks, key=key, family=family, label=f"run {run.pk}", keep=settings.MLOPEN_WARM_RUNS)


def preheat() -> None:
    """Start this worker's blank processes for the default runtime, if it is built here: the first
    run of a new pipeline then skips starting Python and importing its packages."""
    if settings.MLOPEN_PREIMPORT_POOL <= 0:
        return
    digest = runtimes.digest_of(runtimes.lock_of(settings.MLOPEN_DEFAULT_RUNTIME))
    if not runtimes.built_here(digest):
        return  # built on its first run's demand; that run's worker keeps blank processes from then on
    # The fields build_job gives a run of a pipeline with the default limits (blank_key's fields).
    template = Job(
        kind="run",
        control_path="",
        work_dir="",
        memory_mb=settings.MLOPEN_RUN_MEMORY_MB,
        python=str(runtimes.python_of(digest)),
        allow_network=False,
        extra_pythonpath=[str(environments.sdk_overlay())],
        disk_mb=settings.MLOPEN_RUN_DISK_MB,
        max_processes=settings.MLOPEN_RUN_MAX_PROCESSES,
    )
    pool().prepare(template)


def pool() -> WarmPool:
    """This worker's pool, created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WarmPool(
                settings.MLOPEN_WORK_DIR / "warm" / f"worker-{os.getpid()}",
                max_processes=settings.MLOPEN_WARM_MAX,
                idle_seconds=settings.MLOPEN_WARM_IDLE_SECONDS,
                blank_pool_size=settings.MLOPEN_PREIMPORT_POOL,
                preimport_modules=settings.MLOPEN_PREIMPORT_MODULES,
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
