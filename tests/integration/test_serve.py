"""`mlopen serve` end to end: a real waitress, real supervised workers, the demo registered once,
and a worker killed with SIGKILL is replaced while the run it held is failed, not left running.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from worker_support import seed_default_runtime

pytestmark = [pytest.mark.engine, pytest.mark.embedded, pytest.mark.slow]

HANG = """
import time
def train(inpt, params=None):
    pass
def run_pipeline(input, model, args, params=None):
    print("started", flush=True)
    time.sleep(600)
    return {"text": "never"}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, home: Path, workers: int = 1, **extra_env: str):
        self.home = home
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DJANGO_SETTINGS"))}
        env.update(
            MLOPEN_HOME=str(home),
            MLOPEN_ENV="development",
            MLOPEN_ADMIN_USER="boss",
            MLOPEN_ADMIN_PASSWORD="boss-password-1",
            MLOPEN_ADMIN_TOKEN="serve-test-token",
            MLOPEN_LOAD_DEMO="true",
            MLOPEN_HEARTBEAT_INTERVAL="1",
            MLOPEN_HEARTBEAT_TIMEOUT="5",
            MLOPEN_DEFAULT_QUEUE="mlopen",
            MLOPEN_WEB_PROCESSES="1",
        )
        env.update(extra_env)
        env.pop("MLOPEN_TEST_HOME", None)
        home.mkdir(parents=True, exist_ok=True)
        self.log_path = home / "serve.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlopen.cli.main", "serve", "--port", str(self.port), "--workers", str(workers)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": "Token serve-test-token"}, timeout=30)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, workers: int, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        body = {}
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()[-3000:]
            try:
                response = self.client.get("/healthz")
                body = response.json()
                if response.status_code == 200 and body["workers"] >= workers:
                    return body
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"not healthy with {workers} worker(s): {body}\n{self.output()[-3000:]}")

    def wait_run(self, run_id: int, until=("succeeded", "failed", "cancelled"), timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.client.get(f"/api/v1/runs/{run_id}/").json()
            if run["status"] in until:
                return run
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} stuck: {run}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One `mlopen serve` for the module's tests, in file order: a fresh installation takes tens of
    seconds to start (migrations, static files, the default runtime, the demo). The test that kills
    a worker comes last, and checks that the server recovers."""
    running = Server(tmp_path_factory.mktemp("serve") / "home")
    yield running
    running.stop()


def _worker_pids(server_pid: int) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(server_pid), "-f", "mlopen.cli.main worker"], capture_output=True, text=True
    ).stdout
    return [int(pid) for pid in out.split()]


def test_serve_starts_web_and_worker_and_runs_a_demo_pipeline(server):
    health = server.wait_healthy(workers=1)
    assert health == {**health, "status": "ok", "database": "ok", "broker": "ok", "workers": 1}
    pipelines = {p["name"]: p for p in server.client.get("/api/v1/pipelines/").json()["results"]}
    assert {"iris_knn", "sentiment", "data_explorer"} <= set(pipelines)
    datasets = {d["filename"]: d for d in server.client.get("/api/v1/datasets/").json()["results"]}
    run = server.client.post(
        "/api/v1/runs/", json={"pipeline": "iris_knn", "kind": "run", "input": datasets["iris.csv"]["id"], "params": {}}
    ).json()
    finished = server.wait_run(run["id"])
    assert finished["status"] == "succeeded", finished
    assert finished["result"]["rows"] > 0 and finished["result"]["graphs"]
    # The welcome box, printed once the workers are up: the address and the admin made from the environment.
    assert f"| mlopen is running: http://127.0.0.1:{server.port}/" in server.output()
    assert "user:      boss   (password: MLOPEN_ADMIN_PASSWORD)" in server.output()
    assert "boss-password-1" not in server.output()
    assert "[config]" not in server.output()  # the workers' Celery banner is off
    login_page = server.client.get("/accounts/login/")
    assert login_page.status_code == 200
    assert server.client.get("/static/vendor/plotly/plotly.min.js").status_code == 200
    # The access log, in what serve prints: who asked what, the answer, its size and time.
    log = server.output()
    assert re.search(r'127\.0\.0\.1 boss "POST /api/v1/runs/ HTTP/1\.1" 20\d \d+ [\d.]+ms', log), log[-3000:]
    assert re.search(r'127\.0\.0\.1 - "GET /accounts/login/ HTTP/1\.1" 200 \d+ [\d.]+ms', log)


def test_sigkilled_worker_is_restarted_and_its_run_is_marked_failed(server):
    server.wait_healthy(workers=1)
    response = server.client.post("/api/v1/pipelines/", files={"control": ("hang.py", HANG.encode())})
    assert response.status_code == 201, response.text
    run = server.client.post("/api/v1/runs/", json={"pipeline": "hang", "kind": "run"}).json()
    server.wait_run(run["id"], until=("running",))
    [worker_pid] = _worker_pids(server.process.pid)
    os.kill(worker_pid, signal.SIGKILL)

    lost = server.wait_run(run["id"], until=("failed",), timeout=60)
    assert "worker" in lost["error"].lower() and "lost" in lost["error"], lost["error"]

    server.wait_healthy(workers=1, timeout=90)
    new_pids = _worker_pids(server.process.pid)
    assert new_pids and worker_pid not in new_pids
    quick = (
        "def train(inpt, params=None):\n    pass\n"
        "def run_pipeline(input, model, args, params=None):\n    return {'text': 'ok'}\n"
    )
    response = server.client.post("/api/v1/pipelines/", files={"control": ("quick.py", quick.encode())})
    assert response.status_code == 201, response.text
    again = server.client.post("/api/v1/runs/", json={"pipeline": "quick", "kind": "run"}).json()
    finished = server.wait_run(again["id"])
    # The restarted worker took it.
    assert finished["status"] == "succeeded" and finished["worker"], finished


RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"


def _rabbitmq_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _rabbitmq_reachable(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_serve_with_rabbitmq_as_broker_runs_a_pipeline(tmp_path):
    from kombu import Connection, Queue

    queue = f"serve-amqp-{os.getpid()}-{time.monotonic_ns()}"
    # This test is about the broker: its home starts with the default runtime built (the demo test
    # above starts from an empty home and builds it as a first start does).
    seed_default_runtime(tmp_path / "home")
    server = Server(tmp_path / "home", CELERY_BROKER_URL=RABBITMQ, MLOPEN_DEFAULT_QUEUE=queue, MLOPEN_LOAD_DEMO="false")
    try:
        health = server.wait_healthy(workers=1)
        assert (health["broker"], health["workers"]) == ("ok", 1)
        quick = (
            b"def train(inpt, params=None):\n    pass\n"
            b"def run_pipeline(input, model, args, params=None):\n    return {'text': 'via rabbitmq'}\n"
        )
        assert server.client.post("/api/v1/pipelines/", files={"control": ("quick.py", quick)}).status_code == 201

        # The client waits longer than the server (it read-timed out at 30 s once, on a loaded CI
        # host, while the run waited for a runtime build): a slow run comes back as a run with its
        # status and the server's log, not as a read timeout.
        run = server.client.post("/api/v1/runs/", json={"pipeline": "quick", "wait": 60}, timeout=90).json()

        assert run["status"] == "succeeded", (run, server.output()[-3000:])
        assert run["result"]["text"] == "via rabbitmq"
        assert run["queue"] == queue
    finally:
        server.stop()
        with Connection(RABBITMQ) as connection:
            Queue(queue).bind(connection.default_channel).delete()
