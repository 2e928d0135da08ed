#!/usr/bin/env python
"""Latency and throughput of a run: direct call, fresh process, and mlopen's API cold and warm.

Starts its own mlopen (a temporary MLOPEN_HOME, `mlopen serve --workers 0` for the web server,
and `mlopen worker` processes it starts and stops itself), uploads bench/pipeline/bench_logreg.py
(logistic regression), trains it on 100 rows, then runs it on another 100-row input:

  direct      run_pipeline called in this process, model already loaded (the floor)
  spawn       `python -c` that imports the control file, unpickles the model and runs it
  API cold    POST /api/v1/runs/ with "wait" -> the finished run with its result, MLOPEN_WARM_RUNS=false
  API warm    the same with warm runs (the default)

and the throughput (runs/s) of a burst of runs with 1 and 2 workers, cold and warm. Backends:
`embedded` (SQLite + folder broker, the default install) and `postgres-redis`.

Cold runs take a worker's blank pre-imported process (MLOPEN_PREIMPORT_POOL, `--preimport-pool`;
0 measures fresh processes): the bench waits `--cold-pause` seconds before each cold run, the time
a worker needs to start the blank process that replaces the one the previous run took, as a first
run of a new pipeline on a worker that was not starting one a moment ago would find it.

`--peer mlflow` also serves the same model with `mlflow models serve` (bench/peer_mlflow.py: MLflow
in a throw-away venv, never a dependency of mlopen) and reports mlopen's ratios to it.
Writes bench/results/latest.md and prints it. See bench/README.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import importlib.util
import itertools
import os
import pickle
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from mlopen_runner import sandbox_status
from mlopen_runner.inputs import InputFile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_mlflow  # noqa: E402 - bench/ is not a package: its own folder on the path first

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CONTROL = BENCH / "pipeline" / "bench_logreg.py"
TOKEN = "bench-token-0123456789"
ROWS = 100
BACKENDS = {
    "embedded": "SQLite + folder broker",
    "postgres-redis": "PostgreSQL + Redis",
}
PG_URL = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/13")

SPAWN_SNIPPET = """
import importlib.util, pickle, sys
control, model_path, input_path = sys.argv[1:4]
sys.path.insert(0, control.rsplit("/", 1)[0])
spec = importlib.util.spec_from_file_location("bench_logreg", control)
module = importlib.util.module_from_spec(spec)
sys.modules["bench_logreg"] = module
spec.loader.exec_module(module)
with open(model_path, "rb") as handle:
    saved = pickle.load(handle)
# model.pkl (format 2) holds each saved object pickled on its own; the last model is `model`.
model = pickle.loads(saved["models"][-1][1])
args = {name: pickle.loads(pickled) for name, pickled in saved["args"]}
from mlopen_runner.inputs import InputFile
result = module.run_pipeline(InputFile(input_path, "input.csv"), model, args, {})
assert len(result["data"]) == 100
"""


# --- measurements ------------------------------------------------------------------------------


@dataclass
class Series:
    label: str
    seconds: list[float] = field(default_factory=list)
    breakdown: dict[str, list[float]] = field(default_factory=dict)

    def p(self, q: float) -> float:
        ordered = sorted(self.seconds)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds) * 1000


@dataclass
class Throughput:
    backend: str
    mode: str
    workers: int
    runs: int  # per burst
    seconds: list[float]  # one per burst
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU per run, by part, over all bursts
    clients: int = 1

    def add(self, other: Throughput) -> None:
        """Take in ``other``'s bursts (the same runs per burst); the CPU per run becomes the mean."""
        bursts = len(self.seconds)
        self.seconds += other.seconds
        parts = set(self.cpu_ms) | set(other.cpu_ms)
        self.cpu_ms = {
            part: (self.cpu_ms.get(part, 0.0) * bursts + other.cpu_ms.get(part, 0.0) * len(other.seconds))
            / len(self.seconds)
            for part in parts
        }

    @property
    def rates(self) -> list[float]:
        return [self.runs / seconds for seconds in self.seconds]

    @property
    def per_second(self) -> float:
        return statistics.median(self.rates)

    @property
    def spread(self) -> str:
        if len(self.rates) < 2:
            return ""
        return f"{min(self.rates):.1f}–{max(self.rates):.1f}"


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to every process at once, then wait for each (killed after 30 s)."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_data(folder: Path) -> tuple[Path, Path]:
    rng = random.Random(7)

    def rows(count: int, start: int) -> str:
        lines = ["id,x1,x2,x3,x4,label"]
        for index in range(start, start + count):
            xs = [round(rng.gauss(0, 1), 4) for _ in range(4)]
            label = int(xs[0] + 0.5 * xs[1] - 0.8 * xs[2] + 0.3 * xs[3] + rng.gauss(0, 0.5) > 0)
            lines.append(",".join(map(str, [index, *xs, label])))
        return "\n".join(lines) + "\n"

    train, new = folder / "train.csv", folder / "input.csv"
    train.write_text(rows(ROWS, 1))
    new.write_text(rows(ROWS, 1001))
    return train, new


def measure_direct(model_path: Path, input_path: Path, count: int) -> Series:
    sys.path.insert(0, str(CONTROL.parent))
    spec = importlib.util.spec_from_file_location("bench_logreg", CONTROL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_logreg"] = module
    spec.loader.exec_module(module)
    with open(model_path, "rb") as handle:
        saved = pickle.load(handle)
    # model.pkl (format 2) holds each saved object pickled on its own; the last model is `model`.
    model = pickle.loads(saved["models"][-1][1])
    args = {name: pickle.loads(pickled) for name, pickled in saved["args"]}
    series = Series("direct call in-process (floor)")
    for index in range(count + 3):
        started = time.perf_counter()
        result = module.run_pipeline(InputFile(str(input_path), "input.csv"), model, args, {})
        if index >= 3:  # the first calls pay for lazy imports inside pandas and scikit-learn
            series.seconds.append(time.perf_counter() - started)
    assert len(result["data"]) == ROWS
    return series


def measure_spawn(model_path: Path, input_path: Path, count: int) -> Series:
    series = Series("fresh process (`python -c`: import, unpickle, run)")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT / "src"),
        **{name: "2" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    for _ in range(count):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", SPAWN_SNIPPET, str(CONTROL), str(model_path), str(input_path)], check=True, env=env
        )
        series.seconds.append(time.perf_counter() - started)
    return series


# --- an mlopen of our own ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mlopen:
    """`mlopen serve --workers 0` plus workers started and stopped by the bench."""

    def __init__(self, backend: str, home: Path, preimport_pool: int = 1) -> None:
        self.backend = backend
        self.preimport_pool = preimport_pool
        self.home = home
        self.poll_s = 0.0  # 0: long-poll (the API's "wait"); else the client's polling interval
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers: list[subprocess.Popen] = []
        self.database = ""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_", "DJANGO_", "MLOPEN_"))
        }
        env.update(
            MLOPEN_HOME=str(home),
            MLOPEN_ENV="development",
            MLOPEN_LOAD_DEMO="false",
            MLOPEN_ADMIN_USER="bench",
            MLOPEN_ADMIN_PASSWORD="bench-password-1",
            MLOPEN_ADMIN_TOKEN=TOKEN,
            MLOPEN_DEFAULT_QUEUE=f"bench-{os.getpid()}",
            MLOPEN_LOG_LEVEL="WARNING",
            MLOPEN_RESULT_PAGE_SIZE=str(ROWS),
            # One client measures the platform's capacity, not fair use between users: the per-user
            # throttles and queue limit (issue 15) would answer a burst with 429s.
            MLOPEN_THROTTLE_USER_SUBMIT="100000/minute",
            MLOPEN_THROTTLE_USER_READ="100000/minute",
            MLOPEN_THROTTLE_USER_WRITE="100000/minute",
            MLOPEN_USER_MAX_QUEUED="0",
            PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
        )
        if backend == "postgres-redis":
            self.database = f"mlopen_bench_{os.getpid()}"
            subprocess.run(["psql", PG_URL + "/postgres", "-qc", f"CREATE DATABASE {self.database}"], check=True)
            env.update(DATABASE_URL=f"{PG_URL}/{self.database}", CELERY_BROKER_URL=REDIS_URL)
        self.env = env
        home.mkdir(parents=True, exist_ok=True)
        self.log = open(home / "bench-serve.log", "ab")
        self.web = subprocess.Popen(
            [sys.executable, "-m", "mlopen.cli.main", "serve", "--workers", "0", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Token {TOKEN}"}, timeout=60)
        self.wait_healthy(0)

    def cpu_seconds(self) -> dict[tuple[str, int], float]:
        """CPU seconds (user + system) so far of each process, keyed by (part, pid)."""
        seen: dict[tuple[str, int], float] = {}

        def note(part: str, process: psutil.Process) -> None:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                seen[(part, process.pid)] = times.user + times.system

        note("bench client", psutil.Process())
        with contextlib.suppress(psutil.Error):
            web = psutil.Process(self.web.pid)
            for process in [web, *web.children(recursive=True)]:
                note("web server", process)
        for worker in self.workers:
            with contextlib.suppress(psutil.Error):
                parent = psutil.Process(worker.pid)
                note("worker", parent)
                for process in parent.children(recursive=True):  # bwrap and the sandboxed pythons
                    note("pipeline processes", process)
        if self.database:  # the servers on this machine: PostgreSQL's processes and Redis (all of them)
            for process in psutil.process_iter(["name"]):
                if (process.info["name"] or "").startswith(("postgres", "redis-server")):
                    note("database and broker", process)
        return seen

    def health(self) -> dict:
        return self.client.get("/healthz").json()

    def wait_healthy(self, workers: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.web.poll() is not None:
                raise RuntimeError(f"mlopen serve exited; see {self.home / 'bench-serve.log'}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                body = self.health()
                if body.get("status") == "ok" and body["workers"] == workers:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"mlopen did not get {workers} live worker(s); see {self.home}")

    def start_workers(self, count: int, warm: bool, **extra_env: str) -> None:
        for index in range(count):
            name = f"bench-{'warm' if warm else 'cold'}-{len(self.workers) + 1}"
            env = dict(
                self.env,
                MLOPEN_WARM_RUNS="true" if warm else "false",
                MLOPEN_WORKER_NAME=name,
                MLOPEN_PREIMPORT_POOL=str(self.preimport_pool),
                **extra_env,
            )
            self.workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "mlopen.cli.main", "worker", "--name", name, "--loglevel", "WARNING"],
                    env=env,
                    stdout=self.log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        self.wait_healthy(len(self.workers))

    def stop_last_worker(self) -> None:
        _stop([self.workers.pop()])
        self.wait_healthy(len(self.workers))

    def stop_workers(self) -> None:
        _stop(self.workers)
        self.workers = []
        self.wait_healthy(0)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop_workers()
        self.web.send_signal(signal.SIGTERM)
        try:
            self.web.wait(30)
        except subprocess.TimeoutExpired:
            self.web.kill()
        self.client.close()
        self.log.close()
        if self.database:
            subprocess.run(
                ["psql", PG_URL + "/postgres", "-qc", f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)"],
                check=False,
            )
            self._forget_queue()

    def _forget_queue(self) -> None:
        """Remove what Celery left in Redis for the bench's own queue (its list and bindings)."""
        import redis  # noqa: PLC0415 - only the postgres-redis backend needs it

        queue = self.env["MLOPEN_DEFAULT_QUEUE"]
        with contextlib.suppress(redis.RedisError):
            client = redis.Redis.from_url(REDIS_URL)
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
            client.close()

    # API
    def post(self, path: str, **kwargs) -> dict:
        response = self.client.post(path, **kwargs)
        response.raise_for_status()
        return response.json()

    def submit(self, pipeline: int, dataset: int, kind: str = "run", wait: float = 0) -> dict:
        body = {"pipeline": pipeline, "kind": kind, "input": dataset}
        if wait:
            body["wait"] = wait
        return self.post("/api/v1/runs/", json=body)

    def wait(self, run_id: int, poll_s: float | None = None, timeout: float = 300) -> dict:
        """The finished run: long-polled with GET ?wait= (poll_s 0), or polled every poll_s seconds."""
        poll_s = self.poll_s if poll_s is None else poll_s
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            params = {} if poll_s else {"wait": 30}
            run = self.client.get(f"/api/v1/runs/{run_id}/", params=params).json()
            if run["status"] in FINISHED:
                return _succeeded(run)
            time.sleep(poll_s)
        raise RuntimeError(f"run {run_id} did not finish in {timeout} s")

    def end_to_end(self, pipeline: int, dataset: int) -> tuple[float, float, dict]:
        """Seconds from submitting a run to holding its result JSON, and how long the first request took.

        The run's detail carries the first page of its result, and the bench's server shows 100 rows
        a page (MLOPEN_RESULT_PAGE_SIZE). Long polling (the default): the POST asks to wait, and
        answers with the finished run. Polling (--poll-ms): the POST answers at once and the client
        GETs the run every poll interval until it has finished.
        """
        started = time.perf_counter()
        run = self.submit(pipeline, dataset, wait=0 if self.poll_s else 30)
        submitted = time.perf_counter()
        if run["status"] not in FINISHED:
            run = self.wait(run["id"])
        elapsed = time.perf_counter() - started
        _succeeded(run)
        assert len(run["result"]["data"]) == ROWS, run["result"]
        return elapsed, submitted - started, run


FINISHED = ("succeeded", "failed", "cancelled")


def _succeeded(run: dict) -> dict:
    if run["status"] != "succeeded":
        raise RuntimeError(f"run {run['id']} {run['status']}: {run['error']}")
    return run


def _seconds_between(run: dict, start: str, end: str) -> float:
    parse = datetime.datetime.fromisoformat
    return (parse(run[end].replace("Z", "+00:00")) - parse(run[start].replace("Z", "+00:00"))).total_seconds()


def measure_api(
    mlopen: Mlopen,
    pipeline: int,
    dataset: int,
    count: int,
    label: str,
    warmup: int,
    poll_s: float = 0.0,
    pause_s: float = 0.0,
) -> Series:
    """End-to-end latency of ``count`` runs; the client long-polls, or polls every ``poll_s`` seconds.
    ``pause_s``: idle time before each run (cold runs: the worker starts its next blank process)."""
    series = Series(label, breakdown={"submit": [], "queue": [], "execute": []})
    mlopen.poll_s = poll_s
    for index in range(warmup + count):
        time.sleep(pause_s)
        elapsed, submit, run = mlopen.end_to_end(pipeline, dataset)
        if index < warmup:
            continue
        series.seconds.append(elapsed)
        series.breakdown["submit"].append(submit)
        series.breakdown["queue"].append(_seconds_between(run, "created_at", "started_at"))
        series.breakdown["execute"].append(_seconds_between(run, "started_at", "finished_at"))
    mlopen.poll_s = 0.0
    return series


def measure_web_floor(mlopen: Mlopen, pipeline: int, dataset: int, count: int, burst: int, clients: int) -> dict:
    """What the web server costs with no run at all: the lowest any run's round trip could go.

    ``GET /api/v1/me/`` is the smallest answer that goes the way a run's POST goes (waitress, the
    middleware, token authentication, DRF; then it reads the user's run counts, ~0.5 ms);
    ``GET /api/v1/runs/<id>/`` reads back a finished run with its 100-row result, the answer a
    waiting POST ends with. Both one at a time,
    then ``burst`` requests for ``me/`` from ``clients`` clients at once, as the peer is measured.
    """
    finished = mlopen.submit(pipeline, dataset, wait=30)
    finished = _succeeded(finished if finished["status"] in FINISHED else mlopen.wait(finished["id"], poll_s=0))
    paths = {
        "me": "/api/v1/me/",
        "detail": f"/api/v1/runs/{finished['id']}/",
    }
    labels = {
        "me": f"web server alone, `GET /api/v1/me/` ({BACKENDS[mlopen.backend]})",
        "detail": f"web server alone, `GET /api/v1/runs/<id>/` of a finished run ({BACKENDS[mlopen.backend]})",
    }
    out: dict = {"backend": mlopen.backend}
    for key, path in paths.items():
        series = Series(labels[key])
        for index in range(3 + count):
            started = time.perf_counter()
            mlopen.client.get(path).raise_for_status()
            if index >= 3:
                series.seconds.append(time.perf_counter() - started)
        out[key] = series
    sessions = [httpx.Client(base_url=mlopen.url, headers=mlopen.client.headers, timeout=60) for _ in range(clients)]
    try:
        for session in sessions:  # connections open before the clock starts
            session.get(paths["me"]).raise_for_status()
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda index: sessions[index % clients].get(paths["me"]).raise_for_status(), range(burst)))
        out["per_second"] = burst / (time.perf_counter() - started)
    finally:
        for session in sessions:
            session.close()
    return out


def measure_throughput(
    mlopen: Mlopen,
    pipeline: int,
    dataset: int,
    runs: int,
    mode: str,
    workers: int,
    warmup: int,
    repeats: int = 1,
    clients: int = 1,
    settle_s: float = 0.0,
) -> Throughput:
    """``repeats`` bursts of ``runs`` runs each, and the CPU each part of the system spent per run."""
    if warmup:  # every worker gets its warm process (or its first run) before the clock starts
        for run_id in [mlopen.submit(pipeline, dataset)["id"] for _ in range(warmup)]:
            mlopen.wait(run_id, poll_s=0)
        # A worker whose first run took its blank pre-imported process starts the next one at once:
        # about a second of imports that would land in the first burst. Bursts measure steady state.
        time.sleep(settle_s)
    result = Throughput(mlopen.backend, mode, workers, runs, [], clients=clients)
    before = mlopen.cpu_seconds()
    for _ in range(repeats):
        started = time.perf_counter()
        burst(mlopen, pipeline, dataset, runs, clients)
        result.seconds.append(time.perf_counter() - started)
    result.cpu_ms = cpu_per_run(before, mlopen.cpu_seconds(), runs * repeats)
    return result


def burst(mlopen: Mlopen, pipeline: int, dataset: int, runs: int, clients: int) -> None:
    """``runs`` runs until every result is in. One client: submitted back to back, then collected.
    Several: each client POSTs a run asking to wait for it, then the next, as the peer's clients do."""
    if clients <= 1:
        ids = [mlopen.submit(pipeline, dataset)["id"] for _ in range(runs)]
        for run_id in ids:
            mlopen.wait(run_id, poll_s=0)
        return
    tickets = itertools.count()

    def client() -> None:
        while next(tickets) < runs:
            run = mlopen.submit(pipeline, dataset, wait=30)
            _succeeded(run if run["status"] in FINISHED else mlopen.wait(run["id"], poll_s=0))

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for done in [pool.submit(client) for _ in range(clients)]:
            done.result()


def cpu_per_run(before: dict, after: dict, runs: int) -> dict[str, float]:
    """CPU ms per run of each part, from two ``Mlopen.cpu_seconds`` readings; a process that was
    not there before counts from zero, one that is gone by the end is left out."""
    spent: dict[str, float] = {}
    for (part, pid), seconds in after.items():
        spent[part] = spent.get(part, 0.0) + seconds - before.get((part, pid), 0.0)
    return {part: 1000 * seconds / runs for part, seconds in spent.items()}


CPU_PARTS = ("web server", "worker", "pipeline processes", "bench client", "database and broker")


# --- the bench ---------------------------------------------------------------------------------


def bench_backend(backend: str, work: Path, args, train_csv: Path, input_csv: Path) -> dict:
    print(f"== {BACKENDS[backend]}", flush=True)
    mlopen = Mlopen(backend, work / backend, args.preimport_pool)
    try:
        with open(CONTROL, "rb") as control:
            pipeline = mlopen.post("/api/v1/pipelines/", files={"control": control})["id"]
        datasets = {}
        for path in (train_csv, input_csv):
            with open(path, "rb") as handle:
                datasets[path.name] = mlopen.post(
                    "/api/v1/datasets/", files={"file": handle}, data={"name": path.name}
                )["id"]
        out: dict = {"series": [], "throughput": []}
        mlopen.start_workers(1, warm=False)
        mlopen.wait(mlopen.submit(pipeline, datasets["train.csv"], kind="train")["id"], poll_s=0)
        model_path = max((mlopen.home / "storage" / "models").rglob("*.pkl"), key=os.path.getmtime)
        out["model_path"] = model_path
        if args.cold_runs:
            print("   cold latency", flush=True)
            out["series"].append(
                measure_api(
                    mlopen,
                    pipeline,
                    datasets["input.csv"],
                    args.cold_runs,
                    f"API end to end, cold ({BACKENDS[backend]}{cold_note(args)})",
                    warmup=0,
                    pause_s=args.cold_pause,
                )
            )
        if args.cold_burst:
            print("   cold throughput", flush=True)
            out["throughput"].append(
                measure_throughput(mlopen, pipeline, datasets["input.csv"], args.cold_burst, "cold", 1, warmup=0)
            )
            mlopen.start_workers(1, warm=False)
            out["throughput"].append(
                measure_throughput(mlopen, pipeline, datasets["input.csv"], 2 * args.cold_burst, "cold", 2, warmup=0)
            )
        mlopen.stop_workers()
        mlopen.start_workers(1, warm=True)
        print("   warm latency", flush=True)
        with profiled(mlopen, backend, args.profile_latency, "latency"):
            out["series"].append(
                measure_api(
                    mlopen,
                    pipeline,
                    datasets["input.csv"],
                    args.runs,
                    f"API end to end, warm ({BACKENDS[backend]})",
                    warmup=2,
                )
            )
        if args.poll_ms:
            out["series"].append(
                measure_api(
                    mlopen,
                    pipeline,
                    datasets["input.csv"],
                    args.runs,
                    f"API end to end, warm ({BACKENDS[backend]}, client polls every {args.poll_ms:g} ms)",
                    warmup=2,
                    poll_s=args.poll_ms / 1000,
                )
            )
        print("   web server alone", flush=True)
        out["web_floor"] = measure_web_floor(
            mlopen, pipeline, datasets["input.csv"], args.runs, args.burst, args.burst_clients
        )
        print("   warm throughput", flush=True)

        def warm_burst(workers: int, warmup: int) -> Throughput:
            return measure_throughput(
                mlopen,
                pipeline,
                datasets["input.csv"],
                args.burst,
                "warm",
                workers,
                warmup=warmup,
                clients=args.burst_clients,
                settle_s=args.cold_pause,
            )

        # One worker's bursts and two workers' take turns (1, 2, 1, 2...): this host's speed drifts
        # over minutes, and all of one then all of the other compared two different machines.
        one = Throughput(mlopen.backend, "warm", 1, args.burst, [], clients=args.burst_clients)
        two = Throughput(mlopen.backend, "warm", 2, args.burst, [], clients=args.burst_clients)
        for turn in range(args.bursts):
            with profiled(mlopen, backend, args.profile and turn == 0):
                one.add(warm_burst(1, warmup=0))
            mlopen.start_workers(1, warm=True)
            two.add(warm_burst(2, warmup=4))  # the second worker's warm process first
            mlopen.stop_last_worker()
        out["throughput"] += [one, two]
        if backend == "embedded" and args.fast_poll_ms:
            # What the folder broker's polling costs: the same warm runs with a worker polling faster.
            mlopen.stop_workers()
            mlopen.start_workers(1, warm=True, MLOPEN_BROKER_POLL_SECONDS=str(args.fast_poll_ms / 1000))
            print("   warm latency, fast broker polling", flush=True)
            out["series"].append(
                measure_api(
                    mlopen,
                    pipeline,
                    datasets["input.csv"],
                    args.runs,
                    f"API end to end, warm ({BACKENDS[backend]}, "
                    f"MLOPEN_BROKER_POLL_SECONDS={args.fast_poll_ms / 1000:g})",
                    warmup=2,
                )
            )
        return out
    finally:
        mlopen.close()


@contextlib.contextmanager
def profiled(mlopen: Mlopen, backend: str, enabled: bool, phase: str = "burst"):
    """py-spy flame graphs (bench extra) of the web server and the worker, with their children, while
    the block runs: bench/results/profile-warm-{web,worker}-<backend>.svg (the burst; the one-at-a-time
    latency runs: profile-warm-latency-...). BENCH_PROFILE_FORMAT=raw
    writes collapsed stacks (.txt) instead, for reading the figures as text."""
    if not enabled:
        yield
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    recorders = []
    form = os.environ.get("BENCH_PROFILE_FORMAT", "flamegraph")
    for name, process in (("web", mlopen.web), ("worker", mlopen.workers[0])):
        stem = f"profile-warm-{name}-{backend}" if phase == "burst" else f"profile-warm-{phase}-{name}-{backend}"
        output = BENCH / "results" / f"{stem}.{'txt' if form == 'raw' else 'svg'}"
        command = [py_spy, "record", "--subprocesses", "--rate", "250", "--pid", str(process.pid), "-o", str(output)]
        command += ["--format", form]
        recorders.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1)  # py-spy attaches
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)  # py-spy writes the flame graph when interrupted
        for recorder in recorders:
            recorder.wait(60)


def cold_note(args) -> str:
    if args.preimport_pool <= 0:
        return ", fresh process: MLOPEN_PREIMPORT_POOL=0"
    return f", pre-imported process, {args.cold_pause:g} s apart"


def bench_peer(work: Path, args, train_csv: Path, input_csv: Path) -> dict:
    print("== peer: mlflow models serve", flush=True)
    peer = peer_mlflow.Peer(work, train_csv, free_port())
    try:
        body = peer_mlflow.payload(input_csv)
        label = f"MLflow {peer.version[0]} `models serve` (peer), POST /invocations"
        series = Series(label, peer.latencies(body, args.runs))
        seconds = peer.burst(body, args.burst)
        return {"series": series, "per_second": args.burst / seconds, "version": peer.version}
    finally:
        peer.close()


def peer_lines(
    peer: dict, api: list[Series], throughput: list[Throughput], web_floor: list[dict], floor: float
) -> list[str]:
    """mlopen's ratios to the peer, and the targets of issue 13 that compare with it."""
    mlflow = peer["series"]
    lines = [
        "",
        f"Peer: MLflow {peer['version'][0]} (scikit-learn {peer['version'][1]}) `mlflow models serve "
        "--env-manager local` of the same model, one client posting the same 100 rows to /invocations "
        f"(p50 {mlflow.p50:.1f} ms, p95 {mlflow.p(0.95):.1f} ms); throughput: {args_burst(throughput)} requests "
        f"from {peer_mlflow.BURST_CLIENTS} clients at once: {peer['per_second']:.1f} req/s.",
        "",
        "| mlopen | mlopen | MLflow | mlopen / MLflow | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for series in api:
        if ", warm (" in series.label and "polls" not in series.label:
            ratio = series.p50 / mlflow.p50
            lines.append(
                f"| {series.label} p50 | {series.p50:.1f} ms | {mlflow.p50:.1f} ms | {ratio:.2f}x | "
                f"p50 ≤ MLflow's: {'met' if ratio <= 1 else 'NOT met'} |"
            )
    for item in throughput:
        if item.mode == "warm":
            ratio = item.per_second / peer["per_second"]
            lines.append(
                f"| {BACKENDS[item.backend]}, {item.workers} worker(s), runs/s | {item.per_second:.1f} | "
                f"{peer['per_second']:.1f} | {ratio:.2f}x | ≥ MLflow's: {'met' if ratio >= 1 else 'NOT met'} |"
            )
    for item in web_floor:
        me = item["me"]
        lines.append(
            f"| {me.label} p50, plus the direct call | {me.p50 + floor:.1f} ms | {mlflow.p50:.1f} ms | "
            f"{(me.p50 + floor) / mlflow.p50:.2f}x | the lowest a run's p50 could go here |"
        )
        lines.append(
            f"| {me.label}, req/s | {item['per_second']:.1f} | {peer['per_second']:.1f} | "
            f"{item['per_second'] / peer['per_second']:.2f}x | the most runs/s could go here |"
        )
    return lines


def web_floor_lines(web_floor: list[dict], floor: float, clients: int) -> list[str]:
    """The web server's own cost with no run: requests that go the way a run's POST goes."""
    if not web_floor:
        return []
    lines = [
        "",
        "The web server alone, no run: `GET /api/v1/me/` goes the way a run's POST goes (waitress, "
        "middleware, token authentication, DRF; it also reads the user's run counts, ~0.5 ms) and "
        "`GET /api/v1/runs/<id>/` reads back a finished "
        "run with its 100-row result, the answer a waiting POST ends with. One at a time, then a burst of "
        f"`me/` from {clients} clients at once. A run through this web server cannot take less than `me/` "
        f"plus the pipeline's own call ({floor:.1f} ms).",
        "",
        "| request | n | p50 ms | p95 ms | req/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for item in web_floor:
        for key in ("me", "detail"):
            series = item[key]
            rate = f"{item['per_second']:.1f}" if key == "me" else ""
            lines.append(
                f"| {series.label} | {len(series.seconds)} | {series.p50:.1f} | {series.p(0.95):.1f} | {rate} |"
            )
    return lines


def args_burst(throughput: list[Throughput]) -> int:
    return next((item.runs for item in throughput if item.mode == "warm"), 0)


def target_lines(spawn: Series, api: list[Series], throughput: list[Throughput]) -> list[str]:
    """Issue 13's targets that need no peer: cold runs against a fresh process, 2 workers against 1."""
    lines = ["", f"Target: a cold run ≤ 0.25 × a fresh process ({0.25 * spawn.p50:.0f} ms)."]
    for series in api:
        if ", cold (" in series.label:
            ratio = series.p50 / spawn.p50
            lines.append(f"- {series.label}: {ratio:.2f} × a fresh process: {'met' if ratio <= 0.25 else 'NOT met'}.")
    lines += ["", "Target: 2 warm workers at least as fast as 1."]
    for backend in BACKENDS:
        bursts = {item.workers: item for item in throughput if item.backend == backend and item.mode == "warm"}
        if 1 in bursts and 2 in bursts:
            one, two = bursts[1], bursts[2]
            verdict = "met" if two.per_second >= one.per_second else "NOT met"
            overlap = (
                " (the ranges overlap)"
                if len(one.rates) > 1 and min(two.rates) <= max(one.rates) and min(one.rates) <= max(two.rates)
                else ""
            )
            lines.append(
                f"- {BACKENDS[backend]}: {one.per_second:.1f} → {two.per_second:.1f} runs/s (medians){overlap}: "
                f"{verdict}."
            )
    return lines


def sandbox_kind() -> str:
    return sandbox_status()["kind"]


def report(
    direct: Series,
    spawn: Series,
    api: list[Series],
    throughput: list[Throughput],
    args,
    elapsed: float,
    peer: dict | None = None,
    web_floor: list[dict] | None = None,
) -> str:
    floor = direct.p50
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        "# mlopen run latency and throughput",
        "",
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs ({cpu}), Python "
        f"{platform.python_version()}, sandbox: {sandbox_kind()}. Pipeline: bench/pipeline/bench_logreg.py "
        f"(scikit-learn logistic regression), input {ROWS} rows, result {ROWS} rows x 7 columns. "
        'The client asks the API to wait for the run (`"wait"` on the POST, `?wait=` on a GET): one '
        f"request from submit to result, unless a row says it polls. Bench took {elapsed:.0f} s.",
        "",
        "| path | n | p50 ms | p95 ms | p50 / floor | p50 - floor ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for series in [direct, spawn, *api, *([peer["series"]] if peer else [])]:
        lines.append(
            f"| {series.label} | {len(series.seconds)} | {series.p50:.1f} | {series.p(0.95):.1f} | "
            f"{series.p50 / floor:.1f}x | {series.p50 - floor:.1f} |"
        )
    lines += [
        "",
        "Where the API's time goes (medians): *POST* = the submit request as the client saw it "
        "(with long polling it holds the result, so it is the whole run); *queue* = the run row's created_at "
        "(its INSERT, inside the POST) to started_at (commit, "
        "broker, claim); *execute* = started_at to finished_at (job, warm or fresh child, result "
        "storage, final UPDATE); *rest* = end-to-end p50 minus queue and execute: the POST up to "
        "its INSERT, and from finished_at until the client holds the finished run with its result "
        "(the waiting request noticing, or the next poll, and the response).",
        "",
        "| path | POST ms | queue ms | execute ms | rest ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for series in api:
        submit, queue, run = (statistics.median(series.breakdown[key]) * 1000 for key in ("submit", "queue", "execute"))
        lines.append(f"| {series.label} | {submit:.1f} | {queue:.1f} | {run:.1f} | {series.p50 - queue - run:.1f} |")
    lines += [
        "",
        "Throughput: a burst of runs until the last result is in. "
        + (
            f"Warm bursts: {args.burst_clients} clients at once, each POSTing a run that waits for its result, "
            "then the next (as the MLflow peer's clients send theirs)"
            if args.burst_clients > 1
            else "Warm bursts: one client submits every run back to back, then collects the results"
        )
        + f"; {args.bursts} bursts each, 1 and 2 workers taking turns, the median shown with the range. "
        "CPU: milliseconds of CPU per run (user + "
        "system) of each part over those bursts (with SQLite the database works inside the web server and "
        "the worker; *database and broker* are PostgreSQL's and Redis's processes on this machine); "
        f"*cores busy* = their sum × runs/s, out of {os.cpu_count()}.",
        "",
        "| backend | runs | workers | burst | runs/s | range | "
        + " | ".join(f"CPU {part} ms" for part in CPU_PARTS)
        + " | cores busy |",
        "| --- | --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in CPU_PARTS) + " | ---: |",
    ]
    for item in throughput:
        cpu = [item.cpu_ms.get(part) for part in CPU_PARTS]
        busy = sum(value or 0.0 for value in cpu) * item.per_second / 1000
        lines.append(
            f"| {BACKENDS[item.backend]} | {item.mode} | {item.workers} | {item.runs} | {item.per_second:.2f} | "
            f"{item.spread} | "
            + " | ".join("" if value is None else f"{value:.1f}" for value in cpu)
            + f" | {busy:.2f} |"
        )
    lines += web_floor_lines(web_floor or [], floor, args.burst_clients)
    warm = [s for s in api if ", warm (" in s.label]
    lines += ["", f"Target: warm p50 within 30 ms of the direct call ({floor:.1f} ms)."]
    for series in warm:
        gap = series.p50 - floor
        lines.append(f"- {series.label}: {gap:.1f} ms over the floor: {'met' if gap <= 30 else 'NOT met'}.")
    lines += target_lines(spawn, api, throughput)
    if peer:
        lines += peer_lines(peer, api, throughput, web_floor or [], floor)
    return "\n".join(lines) + "\n"


def default_folder() -> str | None:
    """Where the bench's MLOPEN_HOME folders go: /var/tmp where it can be written, else the system's
    temporary folder.

    Not /tmp: an install's MLOPEN_HOME is not there (by default it is .mlopen where mlopen is
    started). With the runtime and the jobs' folders under /tmp, bubblewrap makes a folder in the
    pipeline process's own /tmp for each of their mounts, and the warm process's emptying of its /tmp
    after every job tried to remove those, in vain: 0.4 ms a run that no install pays.
    """
    folder = "/var/tmp"
    return folder if os.path.isdir(folder) and os.access(folder, os.W_OK) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument("--runs", type=int, default=50, help="direct and warm runs measured (default 50)")
    parser.add_argument("--cold-runs", type=int, default=8, help="cold API runs measured (default 8)")
    parser.add_argument("--spawn-runs", type=int, default=8, help="fresh-process runs measured (default 8)")
    parser.add_argument("--burst", type=int, default=60, help="warm runs per throughput burst (default 60)")
    parser.add_argument(
        "--bursts", type=int, default=3, help="warm bursts per worker count; the median is reported (default 3)"
    )
    parser.add_argument(
        "--burst-clients",
        type=int,
        default=peer_mlflow.BURST_CLIENTS,
        help="clients at once in a warm burst, each POSTing a run and waiting for it (default "
        f"{peer_mlflow.BURST_CLIENTS}, as the MLflow peer's; 1: one client submits all, then collects)",
    )
    parser.add_argument(
        "--cold-burst", type=int, default=3, help="cold runs per worker in a throughput burst (default 3)"
    )
    parser.add_argument(
        "--fast-poll-ms",
        type=float,
        default=10.0,
        help="also measure warm runs on the embedded backend with the folder broker polled this "
        "often (default 10 ms; 0 skips it)",
    )
    parser.add_argument(
        "--poll-ms",
        type=float,
        default=5.0,
        help="also measure warm runs with a client that polls this often instead of waiting (default 5 ms; 0 skips it)",
    )
    parser.add_argument("--peer", choices=["mlflow"], help="also measure this peer serving the same model")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="flame graphs of the web server and the worker during the 1-worker warm burst (needs py-spy)",
    )
    parser.add_argument(
        "--profile-latency",
        action="store_true",
        help="the same during the warm latency runs, one at a time (profile-warm-latency-*)",
    )
    parser.add_argument(
        "--preimport-pool",
        type=int,
        default=1,
        help="the workers' MLOPEN_PREIMPORT_POOL (default 1; 0: cold runs start fresh processes)",
    )
    parser.add_argument(
        "--cold-pause", type=float, default=3.0, help="seconds of idle before each cold run (default 3)"
    )
    parser.add_argument("--output", type=Path, default=BENCH / "results" / "latest.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary MLOPEN_HOME folders")
    parser.add_argument(
        "--folder",
        type=Path,
        help="where the temporary MLOPEN_HOME folders go (default: /var/tmp, as an install's is not under /tmp)",
    )
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="also put the report between the BENCH markers of the project's README.md",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mlopen-bench-", dir=args.folder or default_folder()))
    try:
        train_csv, input_csv = write_data(work)
        backends = list(BACKENDS) if args.backend == "both" else [args.backend]
        results = {backend: bench_backend(backend, work, args, train_csv, input_csv) for backend in backends}
        model_path = results[backends[0]]["model_path"]
        print("== direct call and fresh process", flush=True)
        direct = measure_direct(model_path, input_csv, args.runs)
        spawn = measure_spawn(model_path, input_csv, args.spawn_runs)
        api = [series for backend in backends for series in results[backend]["series"]]
        throughput = [item for backend in backends for item in results[backend]["throughput"]]
        web_floor = [results[backend]["web_floor"] for backend in backends]
        peer = bench_peer(work, args, train_csv, input_csv) if args.peer else None
        text = report(direct, spawn, api, throughput, args, time.monotonic() - started, peer, web_floor)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    if args.update_readme:
        update_readme(text)
    print(text)
    return 0


def update_readme(text: str) -> None:
    readme = ROOT / "README.md"
    start, end = "<!-- BENCH:START -->", "<!-- BENCH:END -->"
    content = readme.read_text()
    head, _, rest = content.partition(start)
    _, _, tail = rest.partition(end)
    if not rest:
        raise SystemExit(f"{readme} has no {start} marker")
    body = text.replace("# mlopen run latency and throughput", "### Latest figures (bench/run_bench.py)", 1)
    readme.write_text(f"{head}{start}\n{body}{end}{tail}")


if __name__ == "__main__":
    sys.exit(main())
