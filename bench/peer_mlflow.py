"""The peer for `run_bench.py --peer mlflow`: the bench's model served by `mlflow models serve`.

MLflow is never a dependency of mlopen: the bench installs it (with scikit-learn and pandas) into a
throw-away virtual environment of its own, outside the project (MLOPEN_BENCH_PEER_VENV, else
$MLOPEN_HOME/bench/mlflow-venv when MLOPEN_HOME is set, else a folder in the system's temporary
folder), kept between bench runs so a second bench does not install it again. There it trains the
same model the mlopen pipeline trains (bench/pipeline/bench_logreg.py: LogisticRegression(max_iter=500)
on the same 100 rows, the same four features), saves it with mlflow.sklearn.save_model and serves it
with `mlflow models serve --env-manager local` (one uvicorn worker, MLflow's default). The client
posts the same 100-row input (`dataframe_split`) to /invocations and waits for the predictions,
measured like mlopen's runs: sequential requests for latency, a burst for throughput.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REQUIREMENTS = ("mlflow>=3,<4", "scikit-learn", "pandas")
FEATURES = ["x1", "x2", "x3", "x4"]
# Concurrent clients of the throughput burst: MLflow answers one request at a time per worker, and a
# few clients keep it busy without measuring the client's own waits.
BURST_CLIENTS = 4

TRAIN = """
import sys
import mlflow.sklearn
import pandas as pd
from sklearn.linear_model import LogisticRegression

train_csv, out = sys.argv[1:3]
features = ["x1", "x2", "x3", "x4"]
frame = pd.read_csv(train_csv)
model = LogisticRegression(max_iter=500).fit(frame[features], frame["label"])
mlflow.sklearn.save_model(model, out)
"""


def venv_folder() -> Path:
    if os.environ.get("MLOPEN_BENCH_PEER_VENV"):
        return Path(os.environ["MLOPEN_BENCH_PEER_VENV"])
    if os.environ.get("MLOPEN_HOME"):
        return Path(os.environ["MLOPEN_HOME"]) / "bench" / "mlflow-venv"
    return Path(tempfile.gettempdir()) / "mlopen-bench-mlflow-venv"


def ensure_venv(folder: Path) -> Path:
    """The venv's python, installing MLflow first if this folder does not hold it yet."""
    python = folder / "bin" / "python"
    marker = folder / ".mlopen-bench-ready"
    if marker.exists() and python.exists():
        return python
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    print(f"   installing {', '.join(REQUIREMENTS)} into {folder}", flush=True)
    if os.path.exists(uv):
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(folder)], check=True)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *REQUIREMENTS], check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    marker.write_text("")
    return python


def payload(input_csv: Path) -> dict:
    with open(input_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {"dataframe_split": {"columns": FEATURES, "data": [[float(row[name]) for name in FEATURES] for row in rows]}}


class Peer:
    """`mlflow models serve` of the bench's model, started and stopped by the bench."""

    def __init__(self, work: Path, train_csv: Path, port: int) -> None:
        self.python = ensure_venv(venv_folder())
        self.version = subprocess.run(
            [str(self.python), "-c", "import mlflow, sklearn; print(mlflow.__version__, sklearn.__version__)"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        model = work / "mlflow-model"
        shutil.rmtree(model, ignore_errors=True)
        subprocess.run([str(self.python), "-c", TRAIN, str(train_csv), str(model)], check=True)
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(work / "mlflow-serve.log", "ab")
        env = dict(os.environ, PATH=f"{self.python.parent}{os.pathsep}{os.environ.get('PATH', '')}")
        env.pop("PYTHONPATH", None)  # mlopen's sources are nothing of MLflow's
        env["MLFLOW_TRACKING_URI"] = (work / "mlruns").as_uri()
        self.process = subprocess.Popen(
            [str(self.python.parent / "mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local"]
            + ["--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.client = httpx.Client(base_url=self.url, timeout=60)
        self._wait_up()

    def _wait_up(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited; see {self.log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get("/ping").status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"mlflow models serve did not answer /ping in {timeout:.0f} s")

    def predict(self, body: dict, client: httpx.Client | None = None) -> None:
        response = (client or self.client).post("/invocations", json=body)
        response.raise_for_status()
        predictions = response.json()["predictions"]
        assert len(predictions) == len(body["dataframe_split"]["data"]), predictions

    def latencies(self, body: dict, count: int, warmup: int = 3) -> list[float]:
        seconds = []
        for index in range(warmup + count):
            started = time.perf_counter()
            self.predict(body)
            if index >= warmup:
                seconds.append(time.perf_counter() - started)
        return seconds

    def burst(self, body: dict, count: int) -> float:
        """Seconds for `count` requests sent by BURST_CLIENTS clients at once."""
        clients = [httpx.Client(base_url=self.url, timeout=60) for _ in range(BURST_CLIENTS)]
        try:
            for client in clients:
                self.predict(body, client)  # connections open before the clock starts
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(BURST_CLIENTS) as pool:
                list(pool.map(lambda index: self.predict(body, clients[index % BURST_CLIENTS]), range(count)))
            return time.perf_counter() - started
        finally:
            for client in clients:
                client.close()

    def close(self) -> None:
        self.client.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()
