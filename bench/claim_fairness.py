#!/usr/bin/env python
"""What the fair claim costs: lifecycle.claim(run_id) (take the run the message names) against
lifecycle.claim_next(queue) (take the fairest run: users in turn), on a queue where one user has
300 runs waiting and nine others 5 each; each claimed run is finished before the next claim.

Runs against a temporary MLOPEN_HOME (SQLite) unless DATABASE_URL is set:

    PYTHONPATH=src MLOPEN_HOME=$(mktemp -d) python bench/claim_fairness.py
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlopen.settings")
os.environ.setdefault("MLOPEN_LOAD_DEMO", "false")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from mlopen.pipelines.models import Pipeline, PipelineVersion  # noqa: E402
from mlopen.runs import lifecycle  # noqa: E402
from mlopen.runs.models import Run  # noqa: E402

CLAIMS = 200


def main() -> None:
    call_command("migrate", verbosity=0)
    user_model = get_user_model()
    Run.objects.all().delete()
    Pipeline.objects.filter(name="claim-bench").delete()
    user_model.objects.filter(username__startswith="claim-bench-").delete()
    users = [user_model.objects.create_user(f"claim-bench-{i}", password="x") for i in range(10)]
    pipeline = Pipeline.objects.create(name="claim-bench", description="")
    version = PipelineVersion.objects.create(pipeline=pipeline, number=1, control_filename="b.py", folder="x")
    queue = settings.MLOPEN_DEFAULT_QUEUE

    def fill() -> None:
        Run.objects.filter(pipeline=pipeline).delete()
        owners = [users[0]] * 300 + [user for user in users[1:] for _ in range(5)]
        Run.objects.bulk_create(
            [Run(pipeline=pipeline, version=version, kind="run", owner=owner, queue=queue) for owner in owners]
        )

    def timed(claim) -> tuple[float, float]:
        took = []
        for _ in range(CLAIMS):
            started = time.perf_counter()
            run = claim()
            took.append((time.perf_counter() - started) * 1000)
            lifecycle.finish(run.pk, Run.Status.SUCCEEDED)
        return statistics.median(took), sorted(took)[int(CLAIMS * 0.95)]

    fill()
    ids = iter(Run.objects.filter(pipeline=pipeline).order_by("pk").values_list("pk", flat=True))
    median, p95 = timed(lambda: lifecycle.claim(next(ids), "w", "none"))
    print(f"claim(run_id)     median {median:.2f} ms, p95 {p95:.2f} ms")
    fill()
    median, p95 = timed(lambda: lifecycle.claim_next(queue, "w", "none"))
    print(f"claim_next(queue) median {median:.2f} ms, p95 {p95:.2f} ms")


if __name__ == "__main__":
    main()
