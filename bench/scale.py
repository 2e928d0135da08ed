#!/usr/bin/env python
"""Scale bench: 100 000 runs with 20 KB logs, a 1 M-row result, and what the web server does with them.

Starts its own `mlopen serve --workers 0` (a temporary MLOPEN_HOME; SQLite, or
the PostgreSQL server named by DATABASE_URL, on a database of its own), writes the rows straight
into that database (bulk_create, from this process), then measures over HTTP:

  list         GET /api/v1/runs/?status=succeeded&pipeline=N            p50 / p95
  deep pages   the same list 200 pages deep: by cursor (keyset), and by ?page=200 (page numbers, read keys first)
  sorted page  GET /api/v1/runs/<id>/result/?sort=2&order=desc on the 1 M-row result
  filtered     GET .../result/?filter=score:gt:0.999 and ?search=row99999
  json         GET .../download/?format=json: growth of the web process's RSS (sampled from
               /proc every 10 ms while it streams: a real server process, not tracemalloc)
  run page     GET /runs/<id>/ of the 1 M-row run, logged in: server time (the request's wall
               time on loopback)
  upload       POST /api/v1/datasets/ with a 1 GiB CSV (--upload-mb), and the RSS growth meanwhile
  claim        a worker's claim of the next run in fair order (lifecycle.claim_next, in this
               process, rolled back), with 10 runs waiting from 5 users and then with ~20 000 from
               55 users: what finding whose turn it is costs as the queue grows
  beat sweep   a worker's check, every 5 s, for waiting runs whose message was lost
               (sweep.requeue_lost_runs, nothing due), with the same two queues

Writes bench/results/scale-<backend>.md (next to the run bench's latest.md) and prints it, with
the ratio of each figure to the issue's baseline. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TOKEN = "bench-scale-token-0123456789"
PASSWORD = "bench-password-1"
PIPELINES = 20
LOG_BYTES = 20 * 1024
# The figures on main before this work (10 000 runs; 2 cores, SQLite) and its targets.
BASELINE = {
    "list p50": 270.0,
    "list p95": 476.0,
    "deep page": 95.0,
    "sorted page": 310.0,
    "json growth MB": 477.0,
}
TARGET = {"list p95": 100.0, "deep page": 50.0, "sorted page": 150.0, "json growth MB": 100.0, "run page": 300.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ms(seconds: list[float], q: float) -> float:
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(client: httpx.Client, url: str, count: int, **kwargs) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(url, **kwargs)
        times.append(time.perf_counter() - started)
        response.raise_for_status()
    return times


# --- the server -------------------------------------------------------------------------------------


class Server:
    def __init__(self, home: Path, database_url: str | None) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_", "DJANGO_", "MLOPEN_"))
        }
        env.update(
            MLOPEN_HOME=str(home),
            MLOPEN_ENV="development",
            MLOPEN_LOAD_DEMO="false",
            MLOPEN_ADMIN_USER="bench",
            MLOPEN_ADMIN_PASSWORD=PASSWORD,
            MLOPEN_ADMIN_TOKEN=TOKEN,
            MLOPEN_LOG_LEVEL="WARNING",
            MLOPEN_MAX_UPLOAD_MB="1100",
            MLOPEN_DEFAULT_QUEUE=f"bench-scale-{os.getpid()}",
            PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
        )
        if database_url:
            env["DATABASE_URL"] = database_url
        self.env = env
        home.mkdir(parents=True, exist_ok=True)
        self.log = open(home / "bench-serve.log", "ab")
        command = [sys.executable, "-m", "mlopen.cli.main", "serve", "--workers", "0"]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Token {TOKEN}"}, timeout=300)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlopen serve exited; see {home / 'bench-serve.log'}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if self.client.get("/healthz").json().get("status") == "ok":
                    return
            time.sleep(0.3)
        raise RuntimeError("mlopen serve did not start")

    def web_worker_pid(self) -> int:
        """The web server (waitress, one process serving every request), a child of `mlopen serve`."""
        parents = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        servers = [
            pid for pid, parent in parents.items() if parent == self.process.pid and b"mlopen.cli.web" in _cmdline(pid)
        ]
        if len(servers) != 1:
            raise RuntimeError(f"expected one web server process, found {servers}")
        return servers[0]

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


class RssPeak:
    """The highest RSS of ``pid`` while the block runs, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> float:
        return self.peak - self.before


# --- the rows, straight into the database ----------------------------------------------------------


def populate(env: dict, runs: int, result_rows: int) -> dict:
    """Pipelines, `runs` runs with 20 KB logs, and one succeeded run with a `result_rows`-row result."""
    os.environ.update({k: v for k, v in env.items() if k.startswith(("MLOPEN_", "DATABASE_URL"))})
    os.environ["DJANGO_SETTINGS_MODULE"] = "mlopen.settings"
    sys.path.insert(0, str(ROOT / "src"))  # this checkout's mlopen, as the server runs it
    import django  # noqa: PLC0415 - the bench configures Django for the server's database first

    django.setup()
    import pyarrow as pa  # noqa: PLC0415 - after django.setup()
    import pyarrow.parquet as pq  # noqa: PLC0415
    from django.contrib.auth import get_user_model  # noqa: PLC0415
    from django.db import connection, transaction  # noqa: PLC0415

    from mlopen.core import storage  # noqa: PLC0415
    from mlopen.pipelines.models import Pipeline, PipelineVersion  # noqa: PLC0415
    from mlopen.runs import results  # noqa: PLC0415
    from mlopen.runs.models import Run, RunLogChunk  # noqa: PLC0415

    owner = get_user_model().objects.get(username="bench")
    pipelines, versions = [], []
    for index in range(PIPELINES):
        pipeline = Pipeline.objects.create(name=f"scale-{index}", description="bench")
        pipelines.append(pipeline)
        versions.append(
            PipelineVersion.objects.create(
                pipeline=pipeline, number=1, control_filename="p.py", folder=f"pipelines/{pipeline.pk}/v1"
            )
        )
    few_waiting = waiting_runs(versions[0], users=5, each=2, prefix="few")
    claim_few = claim_times(CLAIMS)
    sweep_few = sweep_times(CLAIMS)
    # created_at is auto_now_add; the bench spreads the runs over the last 100 days instead.
    Run._meta.get_field("created_at").auto_now_add = False
    rng = random.Random(13)
    line = "epoch 0042 loss 0.123456 accuracy 0.987654 learning rate 0.001 batch 128 of 512\n"
    log = (line * (LOG_BYTES // len(line) + 1))[:LOG_BYTES]
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=100)
    statuses = ["succeeded"] * 6 + ["failed"] * 2 + ["cancelled", "queued"]
    started = time.perf_counter()
    batch = 1000
    for first in range(0, runs, batch):
        with transaction.atomic():
            made = Run.objects.bulk_create(
                [
                    Run(
                        pipeline=pipelines[(first + i) % PIPELINES],
                        version=versions[(first + i) % PIPELINES],
                        kind="run",
                        owner=owner,
                        status=rng.choice(statuses),
                        created_at=start + datetime.timedelta(seconds=86.4 * (first + i)),
                        input_name="input.csv",
                        params={"alpha": 0.5, "k": 5},
                    )
                    for i in range(min(batch, runs - first))
                ]
            )
            if made[0].pk is None:  # a database that does not return ids from bulk_create
                made = list(Run.objects.order_by("-id")[: len(made)])
            RunLogChunk.objects.bulk_create([RunLogChunk(run=run, seq=0, offset=0, text=log) for run in made])
    populate_seconds = time.perf_counter() - started
    load = os.getloadavg()[0]

    big = Run.objects.create(
        pipeline=pipelines[0],
        version=versions[0],
        kind="run",
        owner=owner,
        status="succeeded",
        input_name="big.csv",
        created_at=datetime.datetime.now(datetime.UTC),
    )
    folder = results.folder_of(big.pk)
    ids = pa.array(range(result_rows), type=pa.int64())
    table = pa.table(
        {
            "id": ids,
            "name": pa.array([f"row{i}" for i in range(result_rows)]),
            "score": pa.array([rng.random() for _ in range(result_rows)]),
            "group": pa.array([f"g{i % 97}" for i in range(result_rows)]),
        }
    )
    path = storage.local_path(f"{folder}/{results.TABLE}")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=results.ROW_GROUP_ROWS)  # as results.store_result writes it
    meta = {"columns": table.column_names, "graphs": [], "images": [], "text": None, "warnings": []}
    storage.write_stream(f"{folder}/{results.META}", [json.dumps(meta).encode()])
    Run.objects.filter(pk=big.pk).update(result_folder=folder, result_rows=result_rows)
    if connection.vendor == "postgresql":
        # What autovacuum does within a minute of a bulk insert like this one: without fresh
        # statistics the planner guesses a few thousand runs, and sorts the table instead of
        # walking the created_at index. SQLite has no such daemon, and mlopen runs no ANALYZE there.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    many_waiting = waiting_runs(versions[1], users=50, each=200, prefix="many") + few_waiting
    many_waiting += Run.objects.filter(status="queued", owner=owner).count()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    claim_many = claim_times(CLAIMS)
    sweep_many = sweep_times(CLAIMS)
    positions = position_times(CLAIMS, owner)
    sweep_backlog = backlog_sweep_times(CLAIMS)
    return {
        "claims": {"few": (few_waiting, claim_few), "many": (many_waiting, claim_many)},
        "sweeps": {"few": sweep_few, "many": sweep_many, "backlog": sweep_backlog},
        "positions": positions,
        "pipeline": pipelines[3].pk,
        "big_run": big.pk,
        "populate_seconds": populate_seconds,
        "load": load,
        "parquet_mb": path.stat().st_size / 1024 / 1024,
    }


def waiting_runs(version, users: int, each: int, prefix: str) -> int:
    """``each`` queued runs for each of ``users`` new users, on the default queue; how many."""
    from django.conf import settings  # noqa: PLC0415 - Django is set up by populate()
    from django.contrib.auth import get_user_model  # noqa: PLC0415

    from mlopen.runs.models import Run  # noqa: PLC0415

    made = get_user_model().objects.bulk_create([get_user_model()(username=f"{prefix}-{i}") for i in range(users)])
    if made[0].pk is None:
        made = list(get_user_model().objects.filter(username__startswith=f"{prefix}-"))
    # Given, 1 ms apart as real submissions are: populate() turns created_at's auto_now_add off.
    now = datetime.datetime.now(datetime.UTC)
    runs = [
        Run(
            pipeline=version.pipeline,
            version=version,
            kind="run",
            owner=user,
            queue=settings.MLOPEN_DEFAULT_QUEUE,
            created_at=now - datetime.timedelta(milliseconds=index),
        )
        for index, user in enumerate(made * each)
    ]
    Run.objects.bulk_create(runs, batch_size=1000)
    return len(runs)


CLAIMS = 40


def claim_times(count: int) -> list[float]:
    """Seconds per claim of the next run, each in a transaction rolled back: the queue stays as it is."""
    from django.conf import settings  # noqa: PLC0415 - Django is set up by populate()
    from django.db import transaction  # noqa: PLC0415

    from mlopen.runs import lifecycle  # noqa: PLC0415

    times = []
    for _ in range(count + 5):  # the first five: compiling, and PostgreSQL preparing the statements
        started = time.perf_counter()
        with transaction.atomic():
            claimed = lifecycle.claim_next(settings.MLOPEN_DEFAULT_QUEUE, "bench-claim", "none")
            transaction.set_rollback(True)
        times.append(time.perf_counter() - started)
        assert claimed is not None, "the bench's waiting runs should be claimable"
    return times[5:]


def sweep_times(count: int) -> list[float]:
    """Seconds per beat's sweep for lost messages, with every waiting run's message just sent
    (nothing due, as on nearly every beat)."""
    from django.utils import timezone  # noqa: PLC0415 - Django is set up by populate()

    from mlopen.runs import sweep  # noqa: PLC0415
    from mlopen.runs.models import Run  # noqa: PLC0415

    # As a worker's sweep finds them between submits: every message younger than the re-send wait.
    Run.objects.filter(status="queued").update(enqueued_at=timezone.now())
    times = []
    for _ in range(count + 5):  # the first five: compiling, and PostgreSQL preparing the statements
        started = time.perf_counter()
        due = sweep.requeue_lost_runs()
        times.append(time.perf_counter() - started)
        assert due == [], "the bench's waiting runs were just sent: nothing is due"
    return times[5:]


def backlog_sweep_times(count: int) -> list[float]:
    """Seconds per beat's sweep behind a backlog: every waiting run submitted 10 minutes ago and its
    message re-sent 3 minutes ago, so older than the re-send wait (2 minutes) and yet not due again
    until it has waited as long as it had then (the doubling rule). In a transaction rolled back:
    the list figures after it must find the runs as they were (20 000 runs of one created_at made
    the cursor walk twice as slow)."""
    from django.db import transaction  # noqa: PLC0415 - Django is set up by populate()
    from django.utils import timezone  # noqa: PLC0415

    from mlopen.runs import sweep  # noqa: PLC0415
    from mlopen.runs.models import Run  # noqa: PLC0415

    now = timezone.now()
    times = []
    with transaction.atomic():
        Run.objects.filter(status="queued").update(
            created_at=now - datetime.timedelta(minutes=10), enqueued_at=now - datetime.timedelta(minutes=3)
        )
        for _ in range(count + 5):
            started = time.perf_counter()
            due = sweep.requeue_lost_runs()
            times.append(time.perf_counter() - started)
            assert due == [], "no waiting run is due again yet"
        transaction.set_rollback(True)
    return times[5:]


def position_times(count: int, owner) -> tuple[int, list[float]]:
    """The queue position of ``owner``'s newest waiting run (the deepest of their queue), as the run
    page asks every few seconds while it waits: (the position, seconds per answer)."""
    from mlopen.runs import fairness  # noqa: PLC0415 - Django is set up by populate()
    from mlopen.runs.models import Run  # noqa: PLC0415

    newest = Run.objects.filter(owner=owner, status="queued").order_by("-created_at", "-pk").first()
    times = []
    for _ in range(count + 5):  # the first five: compiling, and PostgreSQL preparing the statements
        started = time.perf_counter()
        position = fairness.queue_position(newest)
        times.append(time.perf_counter() - started)
    return position, times[5:]


# --- measurements ------------------------------------------------------------------------------------


def measure(server: Server, made: dict, args) -> dict:
    client = server.client
    out: dict = {}
    list_url = f"/api/v1/runs/?status=succeeded&pipeline={made['pipeline']}"
    timed(client, list_url, 3)
    times = timed(client, list_url, args.repeat)
    body = client.get(list_url).json()
    out["list"] = (ms(times, 0.5), ms(times, 0.95), body["count_text"])

    # 200 pages deep by cursor: walk there, then time the pages around it.
    url, depth_times = "/api/v1/runs/?page_size=50", []
    for page in range(1, 201):
        started = time.perf_counter()
        response = client.get(url)
        depth_times.append(time.perf_counter() - started)
        response.raise_for_status()
        url = response.json()["next"]
        if not url:
            break
    depth_times = depth_times[-20:]  # the deepest 20 pages reached
    out["deep cursor"] = (ms(depth_times, 0.5), ms(depth_times, 0.95), page)
    offset = timed(client, f"/api/v1/runs/?page={page}&page_size=50", 10)
    out["deep offset"] = (ms(offset, 0.5), ms(offset, 0.95), page)

    big = made["big_run"]
    sorted_url = f"/api/v1/runs/{big}/result/?sort=2&order=desc&page_size=50"
    timed(client, sorted_url, 2)
    times = timed(client, sorted_url, 10)
    out["sorted page"] = (ms(times, 0.5), ms(times, 0.95))
    last_page = args.result_rows // 100  # a page halfway through the table
    times = timed(client, f"/api/v1/runs/{big}/result/?page={last_page}&page_size=50&sort=2", 5)
    out["sorted deep page"] = (ms(times, 0.5), ms(times, 0.95))
    times = timed(client, f"/api/v1/runs/{big}/result/?filter=score:gt:0.999", 5)
    out["filtered page"] = (ms(times, 0.5), ms(times, 0.95))
    times = timed(client, f"/api/v1/runs/{big}/result/?search=row99999", 5)
    out["searched page"] = (ms(times, 0.5), ms(times, 0.95))

    pid = server.web_worker_pid()
    for fmt in ("json", "ndjson", "csv"):
        started = time.perf_counter()
        size = 0
        with RssPeak(pid) as rss, client.stream("GET", f"/api/v1/runs/{big}/download/?format={fmt}") as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                size += len(chunk)
        out[f"download {fmt}"] = (rss.growth, time.perf_counter() - started, size / 1024 / 1024)

    web = httpx.Client(base_url=server.url, timeout=60)
    login = web.get("/accounts/login/")
    token = web.cookies.get("csrftoken") or re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)[1]
    web.post(
        "/accounts/login/",
        data={"username": "bench", "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": server.url + "/accounts/login/"},
    )
    times = timed(web, f"/runs/{big}/", 6)
    out["run page"] = (ms(times[1:], 0.5), ms(times[1:], 0.95), 1000 * times[0])
    times = timed(web, "/runs/", 6)
    out["runs page"] = (ms(times[1:], 0.5), ms(times[1:], 0.95))

    if args.upload_mb:
        source = server.home / "upload.csv"
        block = "".join(f"{i},{i * 0.5},name{i}\n" for i in range(20000)).encode()
        with open(source, "wb") as handle:
            handle.write(b"id,value,name\n")
            while handle.tell() < args.upload_mb * 1024 * 1024:
                handle.write(block)
        started = time.perf_counter()
        with RssPeak(pid) as rss, open(source, "rb") as handle:
            response = client.post("/api/v1/datasets/", files={"file": ("big.csv", handle, "text/csv")})
        out["upload"] = (time.perf_counter() - started, rss.growth, response.status_code, source.stat().st_size)
        source.unlink()
    return out


def report(backend: str, args, made: dict, out: dict) -> str:
    def ratio(name: str, value: float) -> str:
        return f"{value / BASELINE[name]:.2f}×" if name in BASELINE else "n/a"

    def verdict(name: str, value: float) -> str:
        return "met" if value < TARGET[name] else "**missed**"

    list_p50, list_p95, count_text = out["list"]
    cursor_p50, cursor_p95, pages = out["deep cursor"]
    sorted_p50, sorted_p95 = out["sorted page"]
    page_p50, page_p95, page_first = out["run page"]
    rows = [
        (
            "`GET /api/v1/runs/?status=succeeded&pipeline=N`",
            f"p50 {list_p50:.1f} ms, p95 {list_p95:.1f} ms",
            f"{ratio('list p95', list_p95)} of p95 {BASELINE['list p95']:.0f} ms",
            "p95 < 100 ms",
            verdict("list p95", list_p95),
        ),
        (
            f"runs list {pages} pages deep, by cursor",
            f"p50 {cursor_p50:.1f} ms, p95 {cursor_p95:.1f} ms",
            f"{ratio('deep page', cursor_p95)} of {BASELINE['deep page']:.0f} ms",
            "< 50 ms",
            verdict("deep page", cursor_p95),
        ),
        (
            "runs list `?page=200` (page numbers, keys first)",
            f"p50 {out['deep offset'][0]:.1f} ms, p95 {out['deep offset'][1]:.1f} ms",
            "",
            "",
            "",
        ),
        (
            f"{args.result_rows:,}-row result, page sorted by a column",
            f"p50 {sorted_p50:.1f} ms, p95 {sorted_p95:.1f} ms",
            f"{ratio('sorted page', sorted_p95)} of {BASELINE['sorted page']:.0f} ms",
            "< 150 ms",
            verdict("sorted page", sorted_p95),
        ),
        (
            f"same, sorted, page {args.result_rows // 100:,} (halfway)",
            "p50 {:.1f} ms, p95 {:.1f} ms".format(*out["sorted deep page"]),
            "",
            "",
            "",
        ),
        ("same, `?filter=score:gt:0.999`", "p50 {:.1f} ms, p95 {:.1f} ms".format(*out["filtered page"]), "", "", ""),
        (
            "same, `?search=row99999` (any cell)",
            "p50 {:.1f} ms, p95 {:.1f} ms".format(*out["searched page"]),
            "",
            "",
            "",
        ),
    ]
    for fmt in ("json", "ndjson", "csv"):
        grown, seconds, size = out[f"download {fmt}"]
        rows.append(
            (
                f"`download?format={fmt}` ({size:,.0f} MB in {seconds:.1f} s)",
                f"web process RSS +{grown:.1f} MB",
                f"{ratio('json growth MB', grown)} of {BASELINE['json growth MB']:.0f} MB" if fmt == "json" else "",
                "< 100 MB" if fmt == "json" else "",
                verdict("json growth MB", grown) if fmt == "json" else "",
            )
        )
    rows.append(
        (
            f"{args.result_rows:,}-row result, run page",
            f"p50 {page_p50:.1f} ms, p95 {page_p95:.1f} ms (first load {page_first:.1f} ms)",
            "not measured before",
            "< 300 ms",
            verdict("run page", page_p95),
        )
    )
    rows.append(
        ("runs page `/runs/` (web, page numbers)", "p50 {:.1f} ms, p95 {:.1f} ms".format(*out["runs page"]), "", "", "")
    )
    (few, few_times), (many, many_times) = made["claims"]["few"], made["claims"]["many"]
    rows.append(
        (
            f"a worker's claim of the next run, {many:,} runs waiting from 55 users",
            f"p50 {ms(many_times, 0.5):.2f} ms, p95 {ms(many_times, 0.95):.2f} ms",
            f"{ms(many_times, 0.5) / ms(few_times, 0.5):.2f}× of p50 {ms(few_times, 0.5):.2f} ms "
            f"with {few} waiting from 5, this run",
            "",
            "",
        )
    )
    sweep_few, sweep_many = made["sweeps"]["few"], made["sweeps"]["many"]
    rows.append(
        (
            f"a worker's beat sweep for lost messages (nothing due), {many:,} runs waiting",
            f"p50 {ms(sweep_many, 0.5):.2f} ms, p95 {ms(sweep_many, 0.95):.2f} ms",
            f"{ms(sweep_many, 0.5) / ms(sweep_few, 0.5):.2f}× of p50 {ms(sweep_few, 0.5):.2f} ms "
            f"with {few} waiting, this run",
            "",
            "",
        )
    )
    backlog = made["sweeps"]["backlog"]
    rows.append(
        (
            f"the same sweep behind a backlog (every message older than the wait, none due again), {many:,} waiting",
            f"p50 {ms(backlog, 0.5):.2f} ms, p95 {ms(backlog, 0.95):.2f} ms",
            "",
            "",
            "",
        )
    )
    position, position_times_ = made["positions"]
    rows.append(
        (
            f"queue position of the last of a user's waiting runs: number {position:,} of {many:,} waiting",
            f"p50 {ms(position_times_, 0.5):.2f} ms, p95 {ms(position_times_, 0.95):.2f} ms",
            "",
            "",
            "",
        )
    )
    if "upload" in out:
        seconds, grown, code, size = out["upload"]
        rows.append(
            (
                f"upload of a {size / 1024**3:.2f} GiB CSV (`POST /api/v1/datasets/`)",
                f"{seconds:.1f} s ({size / 1024**2 / seconds:.0f} MB/s), web RSS +{grown:.1f} MB, HTTP {code}",
                "",
                "",
                "",
            )
        )
    lines = [
        f"# Scale bench: {backend}",
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores "
        f"(load average {made['load']:.1f} at the start, {os.getloadavg()[0]:.1f} at the end), "
        f"Python {platform.python_version()}. {args.runs:,} runs with {LOG_BYTES // 1024} KB logs each "
        f"(written in {made['populate_seconds']:.0f} s), over {PIPELINES} pipelines; the list above matched "
        f"{count_text} runs. The result: {args.result_rows:,} rows × 4 columns, "
        f"{made['parquet_mb']:.1f} MB of Parquet. "
        + (
            "PostgreSQL's statistics are refreshed (ANALYZE) after the rows are written, as autovacuum would. "
            if backend == "PostgreSQL"
            else ""
        )
        + "Times are wall times of requests on loopback to `mlopen serve` (waitress), "
        f"{args.repeat} requests per list figure; RSS is the web server's, sampled from /proc every 10 ms.",
        "",
        "| what | measured | vs the issue's baseline | target | |",
        "| --- | --- | --- | --- | --- |",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000, help="runs to generate (default 100 000)")
    parser.add_argument("--result-rows", type=int, default=1_000_000, help="rows of the big result (default 1 M)")
    parser.add_argument("--repeat", type=int, default=50, help="requests per list figure")
    parser.add_argument("--upload-mb", type=int, default=1024, help="size of the uploaded CSV; 0: no upload")
    parser.add_argument("--output", type=Path, default=None, help="report file (default bench/results/scale-<db>.md)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary MLOPEN_HOME (and the PostgreSQL database)"
    )
    args = parser.parse_args()

    database_url = os.environ.get("DATABASE_URL")
    backend = "PostgreSQL" if database_url else "SQLite"
    created_db = None
    if database_url:
        created_db = f"mlopen_scale_{os.getpid()}"
        base = database_url.rsplit("/", 1)[0]
        subprocess.run(["psql", base + "/postgres", "-qc", f"CREATE DATABASE {created_db}"], check=True)
        database_url = f"{base}/{created_db}"
    home = Path(tempfile.mkdtemp(prefix="mlopen-scale-"))
    server = None
    try:
        server = Server(home, database_url)
        made = populate(server.env, args.runs, args.result_rows)
        out = measure(server, made, args)
        text = report(backend, args, made, out)
    finally:
        if server is not None:
            server.close()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        if created_db and not args.keep:
            subprocess.run(
                ["psql", base + "/postgres", "-qc", f"DROP DATABASE IF EXISTS {created_db} WITH (FORCE)"], check=False
            )
    if args.keep:
        print(f"kept {home}" + (f" and the database {created_db}" if created_db else ""))
    output = args.output or BENCH / "results" / f"scale-{backend.lower()}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(text)
    print(f"(written to {output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
