"""`mlopen worker`: one Celery worker process that executes runs one at a time.

Each run already gets its own child process with its own limits, so the worker uses Celery's
solo pool: one run per worker process, and `mlopen serve --workers N` (or more hosts) for more.
"""

from __future__ import annotations

import os
import socket
import sys

import django
from django.conf import settings

from mlopen_runner import sandbox


def run_worker(name: str | None, queues: str | None, loglevel: str = "INFO", quiet: bool = False) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlopen.settings")
    name = name or f"{socket.gethostname()}-{os.getpid()}"
    os.environ["MLOPEN_WORKER_NAME"] = name
    django.setup()
    from mlopen.celery_app import app  # noqa: PLC0415 - after django.setup(), with this worker's name set
    from mlopen.runs.signals import EXIT_SANDBOX_UNAVAILABLE  # noqa: PLC0415 - after django.setup(): it imports models

    try:
        sandbox.require()  # fail closed, before Celery connects to the queue
    except sandbox.SandboxUnavailable as exc:
        print(f"mlopen worker {name} refuses to start: {exc}", file=sys.stderr, flush=True)
        return EXIT_SANDBOX_UNAVAILABLE

    queue_list = queues or settings.MLOPEN_DEFAULT_QUEUE
    # --quiet: no Celery banner (`mlopen serve` starts its workers so: its welcome box stays in view).
    argv = [
        *(["--quiet"] if quiet else []),
        "worker",
        "--pool",
        "solo",
        "--concurrency",
        "1",
        "--hostname",
        f"{name}@%h",
        "--queues",
        queue_list,
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--prefetch-multiplier",
        "1",
    ]
    app.worker_main(argv)
    return 0
