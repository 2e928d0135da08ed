"""Shared test fixtures.

Every test session (and every xdist worker) gets its own MLOPEN_HOME, so its database, broker
folders and storage never mix with a developer's data or another worker's. Engine tests start
real `mlopen worker` processes against the test database and a real broker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from worker_support import database_url, seed_default_runtime

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_configure(config):
    # Must run before pytest-django loads settings (its pytest_configure is trylast).
    if not os.environ.get("PYTEST_XDIST_WORKER") and getattr(config.option, "numprocesses", None):
        # The xdist controller runs no tests. Setting Django up here would put DJANGO_SETTINGS_MODULE
        # and this process's MLOPEN_HOME in the workers' inherited environment, and their
        # pytest-django would load settings from it before their own pytest_configure runs.
        return
    xdist = os.environ.get("PYTEST_XDIST_WORKER", "main")
    # xdist workers inherit the controller's environment, MLOPEN_TEST_HOME included: each process
    # makes its own, or two workers would share one SQLite database and broker folder.
    if os.environ.get("MLOPEN_TEST_HOME_PID") != str(os.getpid()):
        os.environ["MLOPEN_TEST_HOME"] = tempfile.mkdtemp(prefix=f"mlopen-test-{xdist}-")
        os.environ["MLOPEN_TEST_HOME_PID"] = str(os.getpid())
    os.environ["MLOPEN_HOME"] = os.environ["MLOPEN_TEST_HOME"]
    os.environ.pop("MLOPEN_STORAGE_DIR", None)
    os.environ["MLOPEN_ENV"] = "test"
    os.environ["MLOPEN_BASE_URL"] = "http://testserver"  # Django's test client's host
    os.environ["MLOPEN_LOAD_DEMO"] = "false"
    os.environ["MLOPEN_HEARTBEAT_INTERVAL"] = "1"
    # One uv cache for every test process and the servers they start, kept between sessions: each
    # has its own MLOPEN_HOME, and would otherwise download the default runtime (~100 MB) again.
    os.environ.setdefault(
        "MLOPEN_UV_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"mlopen-test-uv-cache-{os.getuid()}")
    )
    os.environ.setdefault("MLOPEN_HEARTBEAT_TIMEOUT", "6")
    # Tests post many runs and poll often: the API's rate limits are far out of their way (the
    # throttle tests lower them with override_settings), and so is the per-user queued limit.
    for scope in ("USER_READ", "ANON_READ", "USER_WRITE", "ANON_WRITE", "USER_SUBMIT", "FAILED_AUTH"):
        os.environ.setdefault(f"MLOPEN_THROTTLE_{scope}", "100000/minute")
    # Runs of concurrent xdist workers sharing one Redis must not take each other's messages.
    os.environ["MLOPEN_DEFAULT_QUEUE"] = f"mlopen-test-{xdist}-{os.getpid()}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlopen.settings")
    # pytest-django sets Django up by itself only when DJANGO_SETTINGS_MODULE was in the environment
    # before pytest started; this hook sets it, so Django is set up here (its trylast hook then
    # blocks database access outside db fixtures as usual).
    import django

    django.setup()
    _retry_flush_on_deadlock()


def pytest_collection_modifyitems(items):
    """Modules marked `slow` first, each in its place otherwise.

    xdist hands out whole modules (--dist loadfile) as its processes ask for more. By default it
    orders them by their number of tests, which put the one-test, two-minute Schemathesis module
    and the `mlopen serve` modules last: one process ran them alone for a minute or two at the end
    of the suite while the other had finished. ./run-tests and .ci/run turn that order off
    (--no-loadscope-reorder) and take this one.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _retry_flush_on_deadlock() -> None:
    """Let pytest-django's between-test flush retry when PostgreSQL picks it as a deadlock victim.

    Transactional tests empty every table with one TRUNCATE while a real worker process may be
    updating its heartbeat or a run; PostgreSQL then aborts one of the two. The worker retries by
    itself on its next tick; the flush is retried here.
    """
    from django.core.management.base import CommandError
    from django.core.management.commands import flush

    original = flush.Command.handle

    def handle(self, **options):
        for attempt in range(5):
            try:
                return original(self, **options)
            except CommandError as exc:
                if "deadlock" not in str(exc.__cause__).lower() or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    flush.Command.handle = handle


def pytest_unconfigure(config):
    home = os.environ.get("MLOPEN_TEST_HOME")
    made_here = os.environ.get("MLOPEN_TEST_HOME_PID") == str(os.getpid())
    if made_here and home and home.startswith(tempfile.gettempdir()) and "mlopen-test-" in home:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def default_runtime_built(request):
    """Pipelines run on the default runtime: give this test process's home the built one before tests
    that run pipelines, so their uploads find it ready on this host and their runs do not wait for a
    worker to build it. Unit tests run no pipeline and skip this."""
    runs_pipelines = any(
        ("integration" in item.path.parts or "e2e" in item.path.parts) for item in request.session.items
    )
    if not runs_pipelines:
        return None
    from django.conf import settings

    started = time.monotonic()
    python = seed_default_runtime(Path(settings.MLOPEN_HOME))
    print(f"default runtime ready in {time.monotonic() - started:.1f} s")  # shown with -s: the suite's cost
    return python


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-password-1")


@pytest.fixture
def author(django_user_model):
    from mlopen.core.roles import set_role

    person = django_user_model.objects.create_user(username="ada", password="ada-password-1")
    set_role(person, "author")
    return person


@pytest.fixture
def admin_user(django_user_model):
    from mlopen.core.roles import set_role

    person = django_user_model.objects.create_user(username="root", password="root-password-1")
    set_role(person, "admin")
    return person


def _client_for(person):
    from rest_framework.test import APIClient

    from mlopen.core.tokens import create_token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_token(person, 'tests')[1]}")
    client.user = person
    return client


@pytest.fixture
def api(admin_user):
    """An API client authenticated with an admin's token."""
    return _client_for(admin_user)


@pytest.fixture
def api_for():
    return _client_for


def worker_env(name: str, extra: dict | None = None) -> dict:
    """The environment a worker process needs to use this test session's database and broker."""
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url()
    env["MLOPEN_WORKER_NAME"] = name
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.update(extra or {})
    return env


class WorkerProcess:
    """A real `mlopen worker` in its own process, for engine tests."""

    def __init__(self, name: str, extra_env: dict | None = None, queues: str | None = None):
        self.name = name
        self.env = worker_env(name, extra_env)
        self.queues = queues
        self.log_path = Path(os.environ["MLOPEN_HOME"]) / f"worker-{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        argv = [sys.executable, "-m", "mlopen.cli.main", "worker", "--name", self.name, "--loglevel", "INFO"]
        if self.queues:
            argv += ["--queues", self.queues]
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: {self.log_text()[-3000:]}")
            if "ready." in self.log_text():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} did not start: {self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self) -> None:
        """Ask the worker to shut down without waiting (stop() waits)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "log", None):
            self.log.close()


@pytest.fixture
def worker(transactional_db):
    """One real worker process serving this test's database (tests using it see committed data only)."""
    process = WorkerProcess(f"test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{time.monotonic_ns()}").start()
    yield process
    process.stop()


@pytest.fixture
def start_worker(transactional_db):
    """Start real workers during a test: ``start_worker(name, queues=None, extra_env=None, env=None)``.

    ``env`` replaces the whole environment (a worker configured from scratch). All are stopped
    when the test ends.
    """
    started: list[WorkerProcess] = []

    def start(
        name: str | None = None, queues: str | None = None, extra_env: dict | None = None, env: dict | None = None
    ) -> WorkerProcess:
        name = name or f"test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{time.monotonic_ns()}"
        process = WorkerProcess(name, extra_env, queues=queues)
        if env is not None:
            process.env = env
        started.append(process)
        return process.start()

    yield start
    for process in started:  # all at once: a worker takes seconds to shut down
        process.terminate()
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def module_worker(request, django_db_setup, django_db_blocker):
    """One real worker process shared by all tests of a module, instead of one started per test.

    A module's ``WORKER_ENV`` dict, if it has one, is added to the worker's environment.

    The module's tests must be transactional (``pytestmark = pytest.mark.django_db(transaction=True)``),
    since the worker only sees committed rows. pytest-django empties every table after each such
    test; the worker does not mind: it reads each run afresh when its message arrives, and its
    heartbeat re-creates its Worker row.
    """
    from mlopen.runs.models import Worker

    name = f"test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-module-{time.monotonic_ns()}"
    process = WorkerProcess(name, getattr(request.module, "WORKER_ENV", None)).start()
    yield process
    process.stop()
    with django_db_blocker.unblock():  # a heartbeat after the last test's flush must not leak its row
        Worker.objects.filter(name=name).delete()


def wait_for_run(run_id: int, timeout: float = 120, until=("succeeded", "failed", "cancelled")):
    """Poll the database until the run reaches one of ``until``; return the refreshed Run."""
    from mlopen.runs.models import Run

    deadline = time.monotonic() + timeout
    run = Run.objects.get(pk=run_id)
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in until:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still {run.status} after {timeout} s; log:\n{run.log[-2000:]}")


@pytest.fixture(name="wait_for_run")
def wait_for_run_fixture():
    """wait_for_run, for test modules (two conftest.py files make `from conftest import` ambiguous)."""
    return wait_for_run


@pytest.fixture
def upload_pipeline(api):
    """Upload a control file from tests/fixtures/pipelines (or given source) through the API."""

    def upload(
        control: str | Path,
        *,
        name: str | None = None,
        support: list[Path] | None = None,
        client=None,
        expect: int = 201,
        source: str | None = None,
    ):
        from django.core.files.uploadedfile import SimpleUploadedFile

        if source is not None:
            control_file = SimpleUploadedFile(str(control), source.encode())
        else:
            path = Path(control) if Path(control).is_absolute() else FIXTURES / "pipelines" / control
            control_file = SimpleUploadedFile(path.name, path.read_bytes())
        data = {"control": control_file}
        if name:
            data["name"] = name
        if support:
            data["support_files"] = [SimpleUploadedFile(p.name, p.read_bytes()) for p in support]
        response = (client or api).post("/api/v1/pipelines/", data, format="multipart")
        assert response.status_code == expect, response.content
        return response.json()

    return upload


@pytest.fixture
def upload_dataset(api):
    def upload(name: str, content: bytes, client=None, expect: int = 201):
        from django.core.files.uploadedfile import SimpleUploadedFile

        response = (client or api).post(
            "/api/v1/datasets/", {"file": SimpleUploadedFile(name, content), "name": name}, format="multipart"
        )
        assert response.status_code == expect, response.content
        return response.json()

    return upload


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs of our own, mounted for the test, to fill for real; skipped where mounting is refused."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
