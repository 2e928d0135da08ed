"""What a live page's poll costs: the runs list fragment answered in full (200) and unchanged (304),
for an admin and for a user (whose visible runs include the sharing subquery), at a given number
of runs. Not part of the suite; run by hand on a quiet machine:

    python bench/live_poll.py               # 20 000 runs, SQLite in a temporary MLOPEN_HOME
    python bench/live_poll.py --runs 100000 --repeat 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    os.environ["MLOPEN_HOME"] = tempfile.mkdtemp(prefix="mlopen-bench-live-")
    os.environ.setdefault("MLOPEN_LOAD_DEMO", "false")
    os.environ["DJANGO_SETTINGS_MODULE"] = "mlopen.settings"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import django  # noqa: PLC0415 - after MLOPEN_HOME is set: settings read it at import

    django.setup()
    from django.contrib.auth import get_user_model  # noqa: PLC0415 - after MLOPEN_HOME is set: settings read it at import
    from django.core.management import call_command  # noqa: PLC0415 - after MLOPEN_HOME is set: settings read it at import
    from django.test import Client  # noqa: PLC0415 - after MLOPEN_HOME is set: settings read it at import
    from django.utils import timezone  # noqa: PLC0415 - after MLOPEN_HOME is set: settings read it at import

    from mlopen.core.roles import set_role  # noqa: PLC0415 - after MLOPEN_HOME is set: settings read it at import
    from mlopen.pipelines.models import Pipeline, PipelineVersion  # noqa: PLC0415 - after MLOPEN_HOME is set: settings read it at import
    from mlopen.runs.models import Run  # noqa: PLC0415 - after MLOPEN_HOME is set: settings read it at import

    call_command("migrate", verbosity=0)
    users = get_user_model()
    admin = users.objects.create_user("admin", password="admin-password-1")
    set_role(admin, "admin")
    user = users.objects.create_user("user", password="user-password-1")
    pipeline = Pipeline.objects.create(name="bench")
    version = PipelineVersion.objects.create(pipeline=pipeline, number=1, control_filename="c.py", folder="p/1")
    now = timezone.now()
    Run.objects.bulk_create(
        [
            Run(
                pipeline=pipeline,
                version=version,
                kind="run",
                owner=user if i % 2 else admin,
                status="succeeded",
                started_at=now,
                finished_at=now,
            )
            for i in range(args.runs)
        ],
        batch_size=5000,
    )
    print(f"| {args.runs} runs | full fragment (200) | unchanged (304) |\n| --- | ---: | ---: |")
    for person in (admin, user):
        client = Client()
        client.force_login(person)
        etag = client.get("/runs/live/")["ETag"]

        def timed(**headers) -> float:
            samples = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                response = client.get("/runs/live/", **headers)
                samples.append((time.perf_counter() - started) * 1000)
                assert response.status_code == (304 if headers else 200)
            return statistics.median(samples)

        print(f"| {person.username} | {timed():.1f} ms | {timed(HTTP_IF_NONE_MATCH=etag):.1f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
