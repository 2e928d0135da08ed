"""Slow and stalled clients against the real web server `mlopen serve` runs: 50 uploads that send
their headers and then a byte now and then, or nothing at all, do not stop /healthz from answering,
and the silent ones are cut after MLOPEN_WEB_CLIENT_TIMEOUT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.engine, pytest.mark.embedded, pytest.mark.slow]

SRC = Path(__file__).resolve().parents[2] / "src"
CLIENT_TIMEOUT = 3  # MLOPEN_WEB_CLIENT_TIMEOUT for this server
STALLED = 25
TRICKLING = 25
UPLOAD_HEAD = (
    b"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000\r\n\r\n"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def web(tmp_path):
    """`mlopen serve` with no worker: its web server only."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DJANGO_SETTINGS"))}
    env.update(
        MLOPEN_HOME=str(tmp_path / "home"),
        MLOPEN_ENV="development",
        MLOPEN_LOAD_DEMO="false",
        MLOPEN_ADMIN_PASSWORD="boss-password-1",
        MLOPEN_WEB_CLIENT_TIMEOUT=str(CLIENT_TIMEOUT),
        MLOPEN_WEB_THREADS="4",  # fewer threads than stalled clients, many times over
    )
    env.pop("MLOPEN_TEST_HOME", None)
    # This checkout's code, not whatever `mlopen` the environment has installed.
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    log = open(tmp_path / "serve.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlopen.cli.main", "serve", "--port", str(port), "--workers", "0"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        try:
            httpx.get(f"{url}/healthz", timeout=5)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
    yield port
    print((tmp_path / "serve.log").read_text()[-3000:])  # shown when the test fails
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


def _open_upload(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(UPLOAD_HEAD)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_stalled_and_trickling_uploads_do_not_stop_healthz_and_silent_ones_are_cut(web):
    stalled = [_open_upload(web) for _ in range(STALLED)]
    trickling = [_open_upload(web) for _ in range(TRICKLING)]
    stop = threading.Event()

    def trickle() -> None:  # a byte every second on each, like the attack in the issue
        while not stop.wait(1.0):
            for sock in trickling:
                try:
                    sock.sendall(b"a")
                except OSError:
                    pass

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        time.sleep(1.0)  # every upload connected and waiting
        for _ in range(5):
            response = httpx.get(f"http://127.0.0.1:{web}/healthz", timeout=5)  # generous: no timing asserted
            assert response.status_code in (200, 503)
            assert "status" in response.json()
            time.sleep(0.5)
        # The silent ones are closed by the server once MLOPEN_WEB_CLIENT_TIMEOUT has passed.
        for sock in stalled:
            sock.settimeout(CLIENT_TIMEOUT * 10)
        assert all(_closed_by_server(sock) for sock in stalled)
        # The trickling ones still hold only a socket each: the server answers as before.
        assert httpx.get(f"http://127.0.0.1:{web}/healthz", timeout=5).json()["status"]
    finally:
        stop.set()
        sender.join()
        for sock in stalled + trickling:
            sock.close()
