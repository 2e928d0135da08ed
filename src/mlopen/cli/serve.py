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
from datetime import UTC, datetime

import django
from django.conf import settings
from django.core.management import call_command

from mlopen.core import staticfiles
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


def prepare(stdout=print) -> tuple[str, str] | None:
    """Migrate, collect the static files, create the bootstrap admin, register demo content once.

    Returns the admin's (user, password) when they were generated now, for the welcome box."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlopen.settings")
    django.setup()
    settings.MLOPEN_HOME.mkdir(parents=True, exist_ok=True)
    call_command("migrate", interactive=False, verbosity=0)
    staticfiles.collect()
    from mlopen.cli.bootstrap import ensure_admin, load_demo  # noqa: PLC0415 - after django.setup(): it imports models

    created = ensure_admin(stdout)
    if settings.MLOPEN_LOAD_DEMO:
        load_demo(stdout)
    return created


def _children(host: str, port: int, workers: int) -> list[Child]:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="mlopen.settings")
    # waitress, not a server that gives each connection a thread: see mlopen.cli.web.
    web = Child("web server", [sys.executable, "-m", "mlopen.cli.web", "--host", host, "--port", str(port)], env)
    children = [web]
    # celery beat sends the periodic tasks (settings.CELERY_BEAT_SCHEDULE: retention's prune) to the
    # workers' queue; one per installation, so `mlopen serve` runs it and `mlopen worker` does not.
    children.append(
        Child(
            "scheduler",
            [
                sys.executable,
                "-m",
                "celery",
                "--app",
                "mlopen.celery_app:app",
                "beat",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
                "--loglevel",
                "WARNING",
            ],
            env,
        )
    )
    base = os.environ.get("MLOPEN_WORKER_NAME") or socket.gethostname()
    from mlopen.runs.signals import EXIT_SANDBOX_UNAVAILABLE  # noqa: PLC0415 - after django.setup(): it imports models

    for index in range(1, workers + 1):
        name = f"{base}-w{index}"
        children.append(
            Child(
                f"worker {name}",
                [sys.executable, "-m", "mlopen.cli.main", "worker", "--name", name, "--quiet"],
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
    started = time.time()
    admin = prepare()
    children = _children(host, port, workers)
    stopping = {"flag": False}

    def request_stop(signum, frame):
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    for child in children:
        child.start()
    try:
        # The box comes last, once the web server answers and the workers have registered: what the
        # children print while they start cannot scroll it away.
        ready = _wait_until_up(children, host, port, workers, started, stopping)
        print(welcome_box(host, port, workers, admin, ready), flush=True)
        while not stopping["flag"]:
            time.sleep(0.5)
            _restart_dead(children)
    finally:
        _stop_all(children)
    return 0


def _wait_until_up(
    children: list[Child], host: str, port: int, workers: int, since: float, stopping: dict, timeout: float = 120
) -> bool:
    """Wait until the web server accepts connections and `workers` workers registered after `since`."""
    from mlopen.runs.models import Worker  # noqa: PLC0415 - after django.setup(): a model

    names = [child.label.removeprefix("worker ") for child in children[1:]]
    deadline = time.monotonic() + timeout
    while not stopping["flag"] and time.monotonic() < deadline:
        _restart_dead(children)
        registered = Worker.objects.filter(name__in=names, last_seen__gte=datetime.fromtimestamp(since, tz=UTC)).count()
        if registered >= workers and _accepts(host, port):
            return True
        time.sleep(0.5)
    return False


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((_reachable(host), port), timeout=1):
            return True
    except OSError:
        return False


def _reachable(host: str) -> str:
    """The address to open in a browser: a wildcard bind is reached through localhost."""
    return "localhost" if host in ("0.0.0.0", "::", "") else host


def welcome_box(host: str, port: int, workers: int, admin: tuple[str, str] | None, ready: bool) -> str:
    """The one thing a first start must show: where to go and how to sign in."""
    lines = [f"mlopen is running: http://{_reachable(host)}:{port}/"]
    if admin and not admin[1]:
        lines.append(f"  user:      {admin[0]}   (password: MLOPEN_ADMIN_PASSWORD)")
    elif admin:
        lines += [
            f"  user:      {admin[0]}",
            f"  password:  {admin[1]}",
            "  (shown once; MLOPEN_ADMIN_PASSWORD chooses it)",
        ]
    else:
        lines.append("  sign in with your account (`mlopen user create NAME --role admin` makes one)")
    state = f"{workers} worker(s) ready" if ready else f"{workers} worker(s) still starting"
    lines.append(f"  {state}; Ctrl+C stops")
    width = max(len(line) for line in lines) + 2
    rule = "+" + "-" * width + "+"
    return "\n".join(["", rule, *(f"| {line.ljust(width - 2)} |" for line in lines), rule, ""])


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
