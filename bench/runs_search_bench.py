"""How long the runs list's queries take with many runs: `python bench/runs_search_bench.py`.

Fills a fresh SQLite database (a temporary MLOPEN_HOME) with --runs runs of one user, each with
two metrics logged over --steps steps and two tags on one run in ten, then times what one page of
the list costs (count and the page's rows, as the page and the API run them) for each kind of
search: none, free text, a tag, a metric ordering and metric columns. Prints a markdown table.
Not part of the tests: timings are measured here, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
# A database of its own: settings read MLOPEN_HOME when they are imported, just below.
os.environ["MLOPEN_HOME"] = tempfile.mkdtemp(prefix="mlopen-search-bench-")
os.environ.pop("DATABASE_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlopen.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.paginator import Paginator  # noqa: E402
from django.http import QueryDict  # noqa: E402
from django.utils import timezone  # noqa: E402

from mlopen.pipelines.models import Pipeline, PipelineVersion  # noqa: E402
from mlopen.runs import search as run_search  # noqa: E402
from mlopen.runs.models import Run, RunMetric, RunTag  # noqa: E402

SEARCHES = {
    "newest first (no filter)": {},
    "q=baseline (text)": {"q": "baseline"},
    "tag=sweep": {"tag": "sweep"},
    "ordering=-metric.accuracy": {"ordering": "-metric.accuracy"},
    "ordering=-duration": {"ordering": "-duration"},
    "columns=param.lr,metric.accuracy,metric.loss": {"columns": "param.lr,metric.accuracy,metric.loss"},
    "tag + q + metric ordering + columns": {
        "tag": "sweep",
        "q": "iris",
        "ordering": "-metric.accuracy",
        "columns": "param.lr,metric.accuracy",
    },
}


def fill(runs: int, steps: int) -> object:
    user = get_user_model().objects.create_user(username="bench")
    pipeline = Pipeline.objects.create(name="iris", description="")
    version = PipelineVersion.objects.create(pipeline=pipeline, number=1, control_filename="iris.py", folder="x")
    now = timezone.now()
    batch = 5000
    for start in range(0, runs, batch):
        made = Run.objects.bulk_create(
            Run(
                pipeline=pipeline,
                version=version,
                kind="run",
                owner=user,
                status="succeeded",
                name=f"baseline {n}" if n % 100 == 0 else "",
                params={"lr": (n % 7) / 10},
                started_at=now,
                finished_at=now + timedelta(seconds=n % 60),
            )
            for n in range(start, min(runs, start + batch))
        )
        RunMetric.objects.bulk_create(
            RunMetric(run=run, name=name, step=step, value=((run.pk * 7919) % 1000) / 1000 + step / 100)
            for run in made
            for name in ("accuracy", "loss")
            for step in range(1, steps + 1)
        )
        RunTag.objects.bulk_create(
            RunTag(run=run, name=tag) for run in made if run.pk % 10 == 0 for tag in ("sweep", "baseline")
        )
    return user


def time_search(user, params: dict, repeats: int) -> tuple[float, float]:
    query = QueryDict(mutable=True)
    query.update(params)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        visible = Run.objects.visible_to(user)
        runs, found = run_search.search_runs(
            visible.select_related("pipeline", "version", "owner").prefetch_related("tags"), query, user
        )
        page = Paginator(runs, 25).get_page(1)
        rows = [run_search.column_values(run, found) for run in page]
        assert rows is not None
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), max(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=5, help="steps logged per metric per run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    user = fill(args.runs, args.steps)
    print(
        f"filled {args.runs} runs, {args.runs * 2 * args.steps} metric values in {time.perf_counter() - started:.1f} s"
    )
    print(f"\n| search (SQLite, {args.runs} runs, first page of 25 + count) | median | max |\n| --- | --- | --- |")
    for label, params in SEARCHES.items():
        median, worst = time_search(user, params, args.repeats)
        print(f"| {label} | {median * 1000:.0f} ms | {worst * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
