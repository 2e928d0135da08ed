"""`mlopen serve`: prepare the database, then run the web server (waitress) and N workers, restarting
any that die.

The supervisor itself runs no request and no pipeline; it only starts, watches and stops its
children, so a crash in either can never take the others down.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import django
from django.conf import settings
from django.core.management import call_command

from mlopen_runner import sandbox

RESTART_BACKOFF_MAX = 30.0
# After a worker's grace period: stopping the pipeline's sandbox and writing the run's outcome.
SHUTDOWN_MARGIN_SECONDS = 20.0


@dataclass
class Child:
    label: str
    argv: list[str]
    env: dict
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    backoff: float = field(default=1.0)
    # An exit status that means "restarting cannot help" (a worker without the sandbox it must use).
    final_status: int | None = None
    given_up: bool = False

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env)
        self.started_at = time.monotonic()
        print(f"mlopen: started {self.label} (pid {self.process.pid})", flush=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.alive():
            self.process.send_signal(sig)


def prepare(stdout=print) -> None:
    """Migrate, create the bootstrap admin, register demo content once."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlopen.settings")
    django.setup()
    settings.MLOPEN_HOME.mkdir(parents=True, exist_ok=True)
    call_command("migrate", interactive=False, verbosity=0)
    from mlopen.cli.bootstrap import ensure_admin, load_demo  # noqa: PLC0415 - after django.setup(): it imports models

    ensure_admin(stdout)
    if settings.MLOPEN_LOAD_DEMO:
        load_demo(stdout)


def _children(host: str, port: int, workers: int) -> list[Child]:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="mlopen.settings")
    # waitress, not a server that gives each connection a thread: see mlopen.cli.web.
    web = Child("web server", [sys.executable, "-m", "mlopen.cli.web", "--host", host, "--port", str(port)], env)
    children = [web]
    base = os.environ.get("MLOPEN_WORKER_NAME") or socket.gethostname()
    from mlopen.runs.signals import EXIT_SANDBOX_UNAVAILABLE  # noqa: PLC0415 - after django.setup(): it imports models

    for index in range(1, workers + 1):
        name = f"{base}-w{index}"
        children.append(
            Child(
                f"worker {name}",
                [sys.executable, "-m", "mlopen.cli.main", "worker", "--name", name],
                dict(env, MLOPEN_WORKER_NAME=name),
                final_status=EXIT_SANDBOX_UNAVAILABLE,
            )
        )
    return children


def _sandbox_refusal() -> str | None:
    """Why this host's workers would refuse to start (MLOPEN_SANDBOX=bubblewrap without a working
    bwrap), or None. The same check each worker makes; asked once here so serve says it up front."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlopen.settings")
    django.setup()
    try:
        sandbox.require()
    except sandbox.SandboxUnavailable as exc:
        return str(exc)
    return None


def serve(host: str, port: int, workers: int) -> int:
    if workers < 0:
        print("mlopen serve: --workers must be 0 or more", file=sys.stderr)
        return 2
    refusal = _sandbox_refusal()
    if refusal and workers:
        from mlopen.runs.signals import EXIT_SANDBOX_UNAVAILABLE  # noqa: PLC0415 - after django.setup(): it imports models

        print(f"mlopen serve: refusing to start {workers} worker(s) here: {refusal}", file=sys.stderr, flush=True)
        return EXIT_SANDBOX_UNAVAILABLE
    if refusal:
        print(
            f"mlopen serve: uploaded control files cannot be read here (that runs in the sandbox): {refusal}",
            file=sys.stderr,
            flush=True,
        )
    prepare()
    children = _children(host, port, workers)
    stopping = {"flag": False}

    def request_stop(signum, frame):
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    for child in children:
        child.start()
    print(f"mlopen: serving on http://{host}:{port}/ with {workers} worker(s); Ctrl+C stops", flush=True)
    try:
        while not stopping["flag"]:
            time.sleep(0.5)
            _restart_dead(children)
    finally:
        _stop_all(children)
    return 0


def _restart_dead(children: list[Child]) -> None:
    now = time.monotonic()
    for child in children:
        if child.given_up:
            continue
        if child.alive():
            if now - child.started_at > 60:
                child.backoff = 1.0  # it ran fine for a while: the next crash restarts it at once
            continue
        code = child.process.returncode if child.process else None
        if child.final_status is not None and code == child.final_status:
            child.given_up = True
            print(f"mlopen: {child.label} refused to start (its reason is above); not restarting it", flush=True)
            continue
        if child.next_start == 0.0:
            print(f"mlopen: {child.label} exited with status {code}; restarting in {child.backoff:.0f} s", flush=True)
            child.next_start = now + child.backoff
            child.backoff = min(RESTART_BACKOFF_MAX, child.backoff * 2)
        elif now >= child.next_start:
            child.next_start = 0.0
            child.restarts += 1
            child.start()


def _stop_all(children: list[Child]) -> None:
    """SIGTERM to all; a worker gives its run MLOPEN_SHUTDOWN_GRACE_SECONDS to finish and then needs
    a few seconds to stop it and record it, so nothing is killed before that (nothing left "running")."""
    from django.conf import settings  # noqa: PLC0415 - configured by prepare()'s django.setup()

    for child in children:
        child.stop(signal.SIGTERM)
    deadline = time.monotonic() + settings.MLOPEN_SHUTDOWN_GRACE_SECONDS + SHUTDOWN_MARGIN_SECONDS
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"mlopen: {child.label} did not stop in time; killing it", flush=True)
            child.stop(signal.SIGKILL)
            child.process.wait()
