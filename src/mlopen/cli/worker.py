"""`mlopen worker`: one Celery worker process that executes runs one at a time.

Each run already gets its own child process with its own limits, so the worker uses Celery's
solo pool: one run per worker process, and `mlopen serve --workers N` (or more hosts) for more.
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
import threading
from typing import NoReturn

import django
from django.conf import settings

from mlopen_runner import sandbox


def run_worker(name: str | None, queues: str | None, loglevel: str = "INFO", quiet: bool = False) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlopen.settings")
    name = name or f"{socket.gethostname()}-{os.getpid()}"
    os.environ["MLOPEN_WORKER_NAME"] = name
    # Celery's Django fixup runs Django's system checks as the worker starts and drops what they
    # find: they load the URLconf with every view of the API and the web pages (0.2 s of a 1 s
    # start, measured) and report nothing. What a worker must have is checked below (the sandbox)
    # and where it is used (database, broker, storage); `mlopen manage check --deploy` runs them.
    os.environ.setdefault("CELERY_SKIP_CHECKS", "1")
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
    try:
        app.worker_main(argv)
    except SystemExit as stop:
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
        _exit_without_teardown(stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1)
    _exit_without_teardown(0)


def _exit_without_teardown(code: int) -> NoReturn:
    """End the worker process without tearing the interpreter down.

    By the time Celery returns it has stopped, the worker_shutdown handler has stopped the warm and
    blank processes, and only this thread is left (any other not a daemon is waited for, as at a
    normal exit). Freeing the modules of Django, Celery, pandas and pyarrow one by one then took
    0.45 s of every worker's stop (measured with strace: SIGTERM to Celery's return 0.11 s, to the
    process's exit 0.56 s), which every restart and `mlopen serve` Ctrl-C waited for. What exiting
    still has to do is done here: database connections closed (SQLite checkpoints on the last
    close), the atexit handlers run (logging's flush among them), output flushed.
    """
    from django.db import connections  # noqa: PLC0415 - django.setup() ran long before

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    connections.close_all()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
