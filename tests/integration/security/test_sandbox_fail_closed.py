"""Red team: a worker that found no bubblewrap ran every pipeline as root with network and database
access, while /healthz (the web server's own probe) said "sandbox": "bubblewrap".

Now the sandbox fails closed where it must (production, or MLOPEN_SANDBOX=bubblewrap): the worker
refuses to start before it takes any run. Where running unsandboxed is allowed, every page says
where each run really ran, and /healthz reports each live worker's sandbox, not its own.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from security_fixtures import make_run
from worker_support import database_url

from mlopen.runs.models import Run, Worker

ROOT = Path(__file__).resolve().parents[3]
REFUSED = 78  # sysexits' EX_CONFIG: `mlopen serve` does not restart a worker that exits so
QUICK = """
def train(inpt, params=None):
    pass
def run_pipeline(input, model, args, params=None):
    return {"text": "ran"}
"""
UNSANDBOXED_WARNING = "This run ran without a sandbox: the pipeline had the worker's access to this host."


def _host_without_bwrap(tmp_path: Path, **env_vars: str) -> dict:
    """This test session's database and broker, seen from a host where bwrap is not installed."""
    env = {k: v for k, v in os.environ.items() if k != "MLOPEN_SANDBOX"}
    no_bwrap = tmp_path / "bin"  # a PATH holding nothing but this Python
    no_bwrap.mkdir(exist_ok=True)
    env.update(
        DATABASE_URL=database_url(),
        PATH=os.pathsep.join([str(no_bwrap), os.path.dirname(sys.executable)]),
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
        **env_vars,
    )
    return env


def _production(**env_vars: str) -> dict:
    return {
        "MLOPEN_ENV": "production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
        "MLOPEN_ALLOWED_HOSTS": "mlopen.example.org",
        **env_vars,
    }


def _run(argv: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command in a session of its own; if it is still going at `timeout` (a worker or server
    that started after all), stop it with everything it started, and fail."""
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(argv[2:4])} was still running after {timeout} s:\n{(stdout + stderr)[-3000:]}")
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def _assert_refused_saying_how_to_fix(done: subprocess.CompletedProcess) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == REFUSED, output[-3000:]
    assert "refuses to start" in output or "refusing to start" in output, output[-3000:]
    assert "bwrap is not installed" in output
    assert "apt-get install bubblewrap" in output and "MLOPEN_SANDBOX=none" in output


def _assert_still_queued(run_id: int, worker_name: str) -> None:
    run = Run.objects.get(pk=run_id)
    assert (run.status, run.worker, run.attempt, run.sandbox, run.started_at) == ("queued", "", 0, "", None)
    assert not Worker.objects.filter(name=worker_name).exists()


# --- Fail closed ---------------------------------------------------------------------------------------


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_worker_refuses_to_start_without_bubblewrap_in_production(tmp_path, pipeline_from, submit):
    pipeline_from("quick", QUICK)
    run = submit("quick")  # its message waits in the queue the worker would serve
    env = _host_without_bwrap(tmp_path, **_production(MLOPEN_WORKER_NAME="no-bwrap"))

    done = _run([sys.executable, "-m", "mlopen.cli.main", "worker", "--name", "no-bwrap"], env)

    _assert_refused_saying_how_to_fix(done)
    _assert_still_queued(run["id"], "no-bwrap")


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_started_directly_refuses_too_before_taking_a_message(tmp_path, pipeline_from, submit):
    from django.conf import settings

    pipeline_from("quick", QUICK)
    run = submit("quick")
    env = _host_without_bwrap(
        tmp_path,
        MLOPEN_SANDBOX="bubblewrap",
        MLOPEN_WORKER_NAME="plain-celery",
        DJANGO_SETTINGS_MODULE="mlopen.settings",
    )

    done = _run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "mlopen.celery_app",
            "worker",
            "--pool",
            "solo",
            "--queues",
            settings.MLOPEN_DEFAULT_QUEUE,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env,
    )

    _assert_refused_saying_how_to_fix(done)
    _assert_still_queued(run["id"], "plain-celery")


@pytest.mark.embedded
def test_serve_refuses_to_start_workers_without_bubblewrap_and_says_why(tmp_path):
    env = _host_without_bwrap(
        tmp_path, MLOPEN_HOME=str(tmp_path / "home"), MLOPEN_SANDBOX="bubblewrap", MLOPEN_LOAD_DEMO="false"
    )
    env.pop("DATABASE_URL", None)

    done = _run([sys.executable, "-m", "mlopen.cli.main", "serve", "--port", "1", "--workers", "2"], env, timeout=60)

    _assert_refused_saying_how_to_fix(done)
    assert "mlopen serve: refusing to start 2 worker(s) here" in done.stderr
    assert "started" not in done.stdout  # no web server, no worker, nothing to restart


def test_serve_does_not_restart_a_worker_that_refused_to_start(capsys):
    from mlopen.cli.serve import Child, _restart_dead

    child = Child(
        "worker w1", [sys.executable, "-c", f"import sys; sys.exit({REFUSED})"], dict(os.environ), final_status=REFUSED
    )
    child.start()
    child.process.wait()

    for _ in range(3):
        _restart_dead(children=[child])
    child.next_start = time.monotonic() - 1  # even past any backoff
    _restart_dead(children=[child])

    assert child.given_up and child.restarts == 0
    assert "mlopen: worker w1 refused to start (its reason is above); not restarting it" in capsys.readouterr().out


@pytest.mark.embedded
def test_deploy_check_fails_in_production_without_bubblewrap(tmp_path):
    env = _host_without_bwrap(tmp_path, MLOPEN_HOME=str(tmp_path / "home"), **_production())
    env.pop("DATABASE_URL", None)

    done = _run([sys.executable, "-m", "mlopen.cli.main", "manage", "check", "--deploy"], env)

    assert done.returncode != 0
    assert "(mlopen.E004) MLOPEN_SANDBOX=bubblewrap, but the sandbox cannot be created here" in done.stderr


# --- The setting ----------------------------------------------------------------------------------------


def _settings_of(tmp_path: Path, **env_vars: str) -> subprocess.CompletedProcess:
    """What a management command process makes of the environment: the setting and the runner's mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPEN_", "DJANGO_", "DATABASE_URL"))}
    env.update(
        MLOPEN_HOME=str(tmp_path),
        MLOPEN_LOAD_DEMO="false",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
        **env_vars,
    )
    code = (
        "from django.conf import settings; from mlopen_runner import sandbox; "
        "print(settings.MLOPEN_SANDBOX, sandbox.mode())"
    )
    return _run([sys.executable, "-m", "mlopen.cli.main", "manage", "shell", "-v", "0", "-c", code], env)


def test_sandbox_setting_rejects_unknown_values(tmp_path):
    done = _settings_of(tmp_path, MLOPEN_SANDBOX="bwrap")

    assert done.returncode != 0
    assert "MLOPEN_SANDBOX must be auto, bubblewrap or none, got 'bwrap'" in done.stderr


def test_production_defaults_to_bubblewrap(tmp_path):
    assert _settings_of(tmp_path, **_production()).stdout.split() == ["bubblewrap", "bubblewrap"]
    assert _settings_of(tmp_path, **_production(MLOPEN_SANDBOX="none")).stdout.split() == ["none", "none"]


def test_development_defaults_to_auto(tmp_path):
    assert _settings_of(tmp_path, MLOPEN_ENV="development").stdout.split() == ["auto", "auto"]
    assert _settings_of(tmp_path, MLOPEN_ENV="development", MLOPEN_SANDBOX="").stdout.split() == ["auto", "auto"]


# --- Where each worker and each run really ran ------------------------------------------------------------


def _worker(name: str, sandbox: str, seen_ago: float = 0) -> Worker:
    return Worker.objects.create(
        name=name,
        hostname=f"{name}.example.org",
        sandbox=sandbox,
        last_seen=timezone.now() - timedelta(seconds=seen_ago),
    )


@pytest.mark.django_db
def test_healthz_reports_each_live_workers_sandbox(client, settings):
    _worker("w-safe", "bubblewrap: bwrap works as uid 65534; process cap: pids cgroup")
    _worker("w-open", "process: bwrap is not installed")
    _worker("w-gone", "process: bwrap is not installed", seen_ago=settings.MLOPEN_HEARTBEAT_TIMEOUT + 60)

    body = client.get("/healthz").json()

    assert body["workers"] == 2
    assert body["live_workers"] == [
        {
            "name": "w-open",
            "hostname": "w-open.example.org",
            "sandbox": "process",
            "sandboxed": False,
            "reason": "bwrap is not installed",
        },
        {
            "name": "w-safe",
            "hostname": "w-safe.example.org",
            "sandbox": "bubblewrap",
            "sandboxed": True,
            "reason": "bwrap works as uid 65534; process cap: pids cgroup",
        },
    ]
    assert body["sandbox"] == "mixed"
    assert "1 of 2 live worker(s) run pipelines without a sandbox" in body["sandbox_note"]
    assert "w-open" in body["sandbox_note"]


@pytest.mark.django_db
def test_healthz_says_bubblewrap_only_when_every_live_worker_is_sandboxed(client):
    assert client.get("/healthz").json()["sandbox"] == "unknown"  # no worker: nothing to vouch for
    _worker("w-open", "process: MLOPEN_SANDBOX=none: pipelines run unsandboxed")
    assert client.get("/healthz").json()["sandbox"] == "none"
    Worker.objects.filter(name="w-open").delete()
    _worker("w-safe", "bubblewrap: bwrap works as uid 65534")
    assert client.get("/healthz").json()["sandbox"] == "bubblewrap"


@pytest.mark.django_db
def test_unsandboxed_run_page_and_api_say_so(world, web_as, api_as):
    unsandboxed = make_run(world.alice, world.pipeline, worker="w-open", sandbox="none")
    sandboxed = make_run(world.alice, world.pipeline, worker="w-safe", sandbox="bubblewrap")

    page = web_as(world.alice).get(f"/runs/{unsandboxed.pk}/").content.decode()
    assert UNSANDBOXED_WARNING in page
    assert UNSANDBOXED_WARNING not in web_as(world.alice).get(f"/runs/{sandboxed.pk}/").content.decode()
    assert api_as(world.alice).get(f"/api/v1/runs/{unsandboxed.pk}/").json()["sandbox"] == "none"
    assert api_as(world.alice).get(f"/api/v1/runs/{sandboxed.pk}/").json()["sandbox"] == "bubblewrap"
    listed = {run["id"]: run["sandbox"] for run in api_as(world.alice).get("/api/v1/runs/").json()["results"]}
    assert (listed[unsandboxed.pk], listed[sandboxed.pk]) == ("none", "bubblewrap")


@pytest.mark.django_db
def test_admin_lists_where_runs_ran_and_marks_unsandboxed_workers(world, web_as):
    make_run(world.alice, world.pipeline, worker="w-open", sandbox="none")
    _worker("w-open", "process: bwrap is not installed")
    admin = web_as(world.admin)

    runs = admin.get("/admin/runs/run/?sandbox__exact=none").content.decode()
    workers = admin.get("/admin/runs/worker/").content.decode()

    assert 'class="field-sandbox">none<' in runs
    assert 'class="field-sandboxed"><img src="/static/admin/img/icon-no.svg" alt="False">' in workers


@pytest.mark.django_db
def test_claiming_a_run_records_the_sandbox_of_the_worker_that_took_it(world):
    from mlopen.runs import lifecycle, workers
    from mlopen_runner import sandbox

    previous = sandbox.mode()
    try:
        for mode, recorded in (("none", "none"), ("bubblewrap", "bubblewrap")):
            sandbox.configure(mode)
            queued = make_run(world.alice, world.pipeline, status="queued")
            taken = lifecycle.claim(queued.pk, f"w-{mode}", workers.sandbox_of_this_process()["kind"])
            assert taken.sandbox == recorded
    finally:
        sandbox.configure(previous)


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_a_run_on_an_unsandboxed_worker_records_it_and_healthz_says_so(
    pipeline_from, submit, wait_for_run, start_worker, client
):
    start_worker("open-worker", extra_env={"MLOPEN_SANDBOX": "none"})
    pipeline_from("quick", QUICK)

    run = wait_for_run(submit("quick")["id"], timeout=60)

    assert (run.status, run.worker, run.sandbox) == ("succeeded", "open-worker", "none")
    body = client.get("/healthz").json()
    assert body["live_workers"] == [
        {
            "name": "open-worker",
            "hostname": Worker.objects.get().hostname,
            "sandbox": "process",
            "sandboxed": False,
            "reason": "MLOPEN_SANDBOX=none: pipelines run unsandboxed",
        }
    ]
    assert body["sandbox"] == "none"
