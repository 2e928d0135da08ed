"""Faults injected into a running mlopen: the database goes away (PostgreSQL connections terminated
by an administrator; SQLite's disk fills up) during a run's claim, flush and finish; the broker
loses its queue under steady load; a worker is told to stop with runs in flight. Each test asserts
that no run is lost, stuck, executed twice or recorded as something it was not.

The SQLite disk-full worker runs with the settings in tests/fault_injection.py: every write fails
with "database or disk is full" while a file of the test's exists (reads still work).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from engine_support import alive, poll, processes_with_marker

from mlopen.celery_app import app
from mlopen.runs.models import Run

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True), pytest.mark.slow]

TESTS = Path(__file__).resolve().parents[2]

STEADY = """
import time
from mlopenapp.utils import io_handler as io
def train(inpt, params=None):
    pass
def run_pipeline(input, model, args, params=None):
    print("started", flush=True)
    for step in range(4):
        io.progress((step + 1) / 4, f"step {step + 1}")
        time.sleep(0.4)
    print("finished", flush=True)
    return {"text": "done"}
"""


def _disk_full_worker(start_worker, tmp_path) -> tuple[object, Path]:
    disk_full = tmp_path / "disk-full"
    worker = start_worker(
        extra_env={
            "DJANGO_SETTINGS_MODULE": "fault_injection",
            "MLOPEN_FAULT_DISK_FULL": str(disk_full),
            "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)]),
        }
    )
    return worker, disk_full


def _ran_once_and_succeeded(run: Run) -> None:
    assert run.status == "succeeded", (run.status, run.error, run.log)
    assert run.log.count("started") == 1 and run.log.count("finished") == 1, run.log
    assert run.result_in_database or run.result_folder  # its result was kept


def test_a_run_whose_disk_fills_up_as_it_finishes_is_recorded_as_succeeded_once_space_returns(
    pipeline_from, submit, start_worker, wait_for_run, tmp_path
):
    pipeline_from("steady", STEADY)
    worker, disk_full = _disk_full_worker(start_worker, tmp_path)
    run = submit("steady")
    poll(lambda: "started" in Run.objects.get(pk=run["id"]).log, timeout=60, message="the pipeline started")

    disk_full.touch()  # its flushes, its heartbeat and its final write now fail
    poll(lambda: "database or disk is full" in worker.log_text(), timeout=30, message="a write failed")
    time.sleep(4)  # the pipeline finishes meanwhile; its outcome waits in the worker
    assert Run.objects.get(pk=run["id"]).status == "running"
    disk_full.unlink()

    done = wait_for_run(run["id"], timeout=90)
    _ran_once_and_succeeded(done)
    assert done.attempt == 1
    assert done.error is None
    assert done.progress_fraction == 1.0


def test_a_run_whose_claim_meets_a_full_disk_waits_and_runs_once_space_returns(
    pipeline_from, submit, start_worker, wait_for_run, tmp_path
):
    pipeline_from("steady", STEADY)
    worker, disk_full = _disk_full_worker(start_worker, tmp_path)
    disk_full.touch()
    run = submit("steady")  # the test's own process writes: only the worker's disk is "full"
    poll(lambda: "database or disk is full" in worker.log_text(), timeout=30, message="the claim failed")
    assert Run.objects.get(pk=run["id"]).status == "queued"
    time.sleep(3)
    disk_full.unlink()

    done = wait_for_run(run["id"], timeout=90)
    _ran_once_and_succeeded(done)
    assert done.attempt == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="pg_terminate_backend is PostgreSQL's")
def test_a_ten_second_database_blip_fails_no_run(pipeline_from, submit, start_worker, wait_for_run):
    pipeline_from("steady", STEADY)
    start_worker()
    start_worker()
    runs = [submit("steady") for _ in range(8)]
    poll(lambda: Run.objects.filter(status="running").exists(), timeout=60, message="a run started before the blip")
    terminated = _terminate_backends_every(0.5, for_seconds=10)

    finished = [wait_for_run(run["id"], timeout=180) for run in runs]
    terminated["thread"].join()  # the blip is over before the next test opens a connection

    print(
        f"the blip terminated {terminated['count']} connections; {sum(run.attempt == 2 for run in finished)} of "
        f"{len(finished)} runs were put back once"
    )
    assert terminated["count"] > 0, "the blip terminated no connection"
    for run in finished:
        _ran_once_and_succeeded(run)
        assert "terminating connection" not in (run.error or "")
    # A run whose pipeline had not started when its database went away may have been put back in
    # the queue once; none ran twice (asserted above from the logs).
    assert all(run.attempt <= 2 for run in finished)


def _terminate_backends_every(interval: float, for_seconds: float) -> dict:
    """From a thread: terminate every connection to the test database but the test's own, every
    ``interval`` s for ``for_seconds`` s (what `pg_terminate_backend` by an administrator, a
    failover or a restarting pooler does). Returns a dict whose "count" grows as it works."""
    own_pid = connection.cursor().connection.info.backend_pid
    settings = connection.settings_dict
    done = {"count": 0}

    def blip():
        admin = psycopg.connect(
            host=settings["HOST"] or "127.0.0.1",
            port=settings["PORT"] or 5432,
            user=settings["USER"],
            password=settings.get("PASSWORD") or None,
            dbname="postgres",
            autocommit=True,
        )
        deadline = time.monotonic() + for_seconds
        while time.monotonic() < deadline:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                (settings["NAME"], own_pid),
            ).fetchall()
            done["count"] += len(rows)
            time.sleep(interval)
        admin.close()

    thread = threading.Thread(target=blip, daemon=True)
    thread.start()
    done["thread"] = thread
    return done


def test_runs_whose_messages_the_broker_lost_under_steady_load_run_before_the_load_ends(
    pipeline_from, submit, start_worker, wait_for_run
):
    pipeline_from("steady", STEADY.replace("time.sleep(0.4)", "time.sleep(0.1)"))
    fast = {"MLOPEN_REQUEUE_SECONDS": "2"}
    # A backlog, then the broker forgets it (Redis restarted without persistence; a folder-broker
    # file deleted) before the workers come: with warm and pre-imported processes two workers
    # would drain six quick runs before the purge, and nothing would be lost.
    lost = [submit("steady") for _ in range(6)]
    from django.conf import settings

    with app.connection_for_write() as broker:
        purged = broker.default_channel.queue_purge(settings.MLOPEN_DEFAULT_QUEUE)
    assert purged, "nothing was waiting in the queue when the broker lost it"
    start_worker(extra_env=fast)
    start_worker(extra_env=fast)
    # Steady load: a new run every 0.3 s for 12 s keeps both workers busy the whole time.
    load = []
    load_ends = time.monotonic() + 12
    while time.monotonic() < load_ends:
        load.append(submit("steady"))
        time.sleep(0.3)
    last_submitted = Run.objects.get(pk=load[-1]["id"]).created_at

    lost_done = [wait_for_run(run["id"], timeout=180) for run in lost]
    load_done = [wait_for_run(run["id"], timeout=180) for run in load]

    for run in lost_done + load_done:
        _ran_once_and_succeeded(run)
        assert run.attempt == 1
    never_lost = [run for run in lost_done if run.started_at < last_submitted]
    # A lost run is re-sent on age alone, not once the workers are idle: busy workers cannot starve it.
    assert [run.pk for run in lost_done if run.finished_at > last_submitted] == [], (
        f"{len(lost_done) - len(never_lost)} lost run(s) waited until the load ended"
    )


SLOW = """
import subprocess, sys, time
def train(inpt, params=None):
    pass
def run_pipeline(input, model, args, params=None):
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{marker}"])
    print("working", flush=True)
    time.sleep({seconds})
    print("finished", flush=True)
    return {{"text": "done"}}
"""


def test_a_worker_told_to_stop_lets_a_run_finish_within_its_grace_period(
    pipeline_from, submit, start_worker, wait_for_run
):
    pipeline_from("short", SLOW.format(marker="short", seconds=3))
    worker = start_worker(extra_env={"MLOPEN_SHUTDOWN_GRACE_SECONDS": "60"})
    run = submit("short")
    poll(lambda: "working" in Run.objects.get(pk=run["id"]).log, timeout=60, message="the pipeline started")

    worker.terminate()  # SIGTERM
    worker.process.wait(timeout=60)

    done = Run.objects.get(pk=run["id"])
    assert (done.status, done.error) == ("succeeded", None)
    assert "finished" in done.log


def test_a_worker_told_to_stop_stops_a_longer_run_after_its_grace_period_and_records_it_with_its_log(
    pipeline_from, submit, start_worker
):
    import uuid

    marker = f"mlopen-shutdown-{uuid.uuid4().hex}"
    pipeline_from("long", SLOW.format(marker=marker, seconds=300))
    worker = start_worker(extra_env={"MLOPEN_SHUTDOWN_GRACE_SECONDS": "2"})
    run = submit("long")
    poll(lambda: "working" in Run.objects.get(pk=run["id"]).log, timeout=60, message="the pipeline started")
    [pipeline_process] = poll(
        lambda: processes_with_marker(marker), timeout=10, message="the pipeline's child is visible"
    )

    worker.terminate()  # SIGTERM
    worker.process.wait(timeout=60)

    stopped = Run.objects.get(pk=run["id"])
    assert stopped.status == "cancelled"
    assert stopped.error == (
        "The worker running this run shut down before it finished (it waited 2 s, MLOPEN_SHUTDOWN_GRACE_SECONDS); "
        "its log so far is kept. Use 'Run again' to run it again."
    )
    assert "working" in stopped.log and "the worker shut down" in stopped.log
    assert "finished" not in stopped.log
    poll(lambda: not alive(pipeline_process), timeout=10, message="the pipeline's processes are gone")
    assert not Run.objects.filter(status="running").exists()
