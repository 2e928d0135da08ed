"""SQLite writers from several processes: Django's backend (the busy handler sleeps) against
mlopen's (mlopen.core.sqlite: writers queue on a lock file), measured in the same run.

Each process loops for --seconds: one write transaction (BEGIN IMMEDIATE, an UPDATE, about
0.5 ms of work holding it, COMMIT), then about 1.5 ms of work outside it, as a worker's claim or
finish sits between its other work. It reports transactions per second over all processes and
the latency of one transaction (waiting for the lock included). Writes
bench/results/sqlite-writers.md.

    python bench/sqlite_writers.py                 # 2, 3 and 4 writers, 5 s each
    python bench/sqlite_writers.py --writers 3 --seconds 10
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import django
from django.conf import settings
from django.db import connection, transaction

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))  # mlopen.core.sqlite, when mlopen is not installed

ENGINES = {"django.db.backends.sqlite3": "Django's SQLite backend", "mlopen.core.sqlite": "mlopen.core.sqlite"}


def _busy(units: int) -> int:
    return sum(range(units))


def writer(engine: str, database: str, seconds: float, results) -> None:
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": engine,
                "NAME": database,
                "OPTIONS": {
                    "transaction_mode": "IMMEDIATE",
                    "timeout": 30,
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                },
            }
        },
        INSTALLED_APPS=[],
    )
    django.setup()
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
            _busy(20_000)
        latencies.append(time.perf_counter() - started)
        _busy(60_000)
    results.put(latencies)


def measure(engine: str, writers: int, seconds: float, folder: Path) -> dict:
    database = folder / f"{engine.replace('.', '-')}-{writers}.sqlite3"
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)")
        db.execute("INSERT INTO counter VALUES (1, 0)")
    results: multiprocessing.Queue = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=writer, args=(engine, str(database), seconds, results)) for _ in range(writers)
    ]
    for process in processes:
        process.start()
    latencies = sorted(sum((results.get() for _ in processes), []))
    for process in processes:
        process.join()

    def quantile(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * share))] * 1000

    return {
        "per_second": len(latencies) / seconds,
        "p50": quantile(0.5),
        "p95": quantile(0.95),
        "p99": quantile(0.99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--output", type=Path, default=BENCH / "results" / "sqlite-writers.md")
    args = parser.parse_args(argv)
    lines = [
        "# SQLite writers from several processes",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, SQLite {sqlite3.sqlite_version}, WAL. Each "
        f"process: a write transaction holding the lock for about 0.5 ms, then about 1.5 ms of other work, "
        f"for {args.seconds:g} s. Latency: one transaction, waiting for the lock included.",
        "",
        "| writers | backend | transactions/s | p50 ms | p95 ms | p99 ms | transactions/s vs Django's |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    with tempfile.TemporaryDirectory(prefix="mlopen-sqlite-bench-") as folder:
        for writers in args.writers:
            baseline = None
            for engine, label in ENGINES.items():
                got = measure(engine, writers, args.seconds, Path(folder))
                baseline = baseline or got["per_second"]
                lines.append(
                    f"| {writers} | {label} | {got['per_second']:.0f} | {got['p50']:.2f} | {got['p95']:.2f} | "
                    f"{got['p99']:.2f} | {got['per_second'] / baseline:.2f}x |"
                )
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
