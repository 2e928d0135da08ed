"""Crash recovery: a run whose worker died is failed once its heartbeat is older than
MLOPEN_HEARTBEAT_TIMEOUT (6 s in tests), by the sweep every live worker runs on each beat (and when
it starts). Reading the run through the API or /healthz never writes. Retrying is the user's
explicit choice.
"""

from __future__ import annotations

import time
import uuid

import psutil
import pytest
from django.conf import settings
from engine_support import alive, poll, processes_with_marker

from mlopen.runs.models import Run, Worker

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


def test_a_run_whose_worker_was_killed_is_failed_as_lost_by_another_worker_within_the_heartbeat_timeout(
    pipeline_from, submit, run_body, start_worker, api, unserved_queue
):
    marker = f"mlopen-orphan-{uuid.uuid4().hex}"
    pipeline_from(
        "long",
        f"""
        import subprocess, sys, time
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{marker}"])
            print("working", flush=True)
            time.sleep(300)
        """,
    )
    worker = start_worker()
    run = submit("long")
    poll(lambda: "working" in Run.objects.get(pk=run["id"]).log, timeout=60, message="the pipeline started")
    [grandchild] = poll(lambda: processes_with_marker(marker), timeout=5, message="the grandchild is visible")
    # A second worker (on a queue of its own, so it takes nothing) whose sweep notices the loss; it
    # beats every half second so that the detection time measures the timeout, not the beat.
    start_worker(queues=unserved_queue, extra_env={"MLOPEN_HEARTBEAT_INTERVAL": "0.5"})

    worker.process.kill()  # SIGKILL: no shutdown hook runs, nothing is told
    killed_at = time.monotonic()
    worker.process.wait()
    lost = poll(
        lambda: (body := run_body(run["id"]))["status"] != "running" and body,
        timeout=30,
        interval=0.2,
        message="the run is no longer running",
    )
    detected_after = time.monotonic() - killed_at
    print(f"lost run failed {detected_after:.1f} s after its worker was killed")

    assert lost["status"] == "failed"
    assert lost["error"] == (
        f"The worker running this run ({worker.name}) was lost: no heartbeat for over "
        f"{settings.MLOPEN_HEARTBEAT_TIMEOUT:g} s. The run did not finish; use 'Run again' "
        "to retry it."
    )
    assert detected_after <= settings.MLOPEN_HEARTBEAT_TIMEOUT + 1, f"detected after {detected_after:.1f} s"
    # The sandbox died with the worker: nothing of the pipeline keeps running unwatched.
    poll(lambda: not alive(grandchild), timeout=5, message="the pipeline's processes are gone")
    # Nothing retried it on its own; running it again is a new run.
    assert Run.objects.get(pk=run["id"]).attempt == 1
    again = api.post(f"/api/v1/runs/{run['id']}/rerun/")
    assert again.status_code == 201, again.content
    assert (again.json()["status"], again.json()["retry_of"]) == ("queued", run["id"])


def test_healthz_only_reads_and_a_starting_worker_fails_runs_whose_worker_stopped_heartbeating(
    pipeline_from, submit, client, start_worker, unserved_queue
):
    from datetime import timedelta

    from django.utils import timezone

    pipeline_from(
        "quiet",
        """
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            return {}
        """,
    )
    run = submit("quiet")
    stale = timezone.now() - timedelta(seconds=settings.MLOPEN_HEARTBEAT_TIMEOUT + 1)
    # As a claim by a worker that then vanished leaves it.
    Run.objects.filter(pk=run["id"]).update(
        status="running", worker="gone-host-w1", attempt=1, started_at=stale, heartbeat_at=stale
    )

    response = client.get("/healthz")

    assert response.status_code == 200
    assert Run.objects.get(pk=run["id"]).status == "running"  # a GET writes nothing
    start_worker(queues=unserved_queue)  # its first sweep, at start, finds the run lost
    lost = poll(
        lambda: (row := Run.objects.get(pk=run["id"])).status != "running" and row,
        timeout=30,
        message="the run is no longer running",
    )
    assert lost.status == "failed"
    assert lost.error.startswith("The worker running this run (gone-host-w1) was lost")


def test_a_workers_heartbeat_keeps_its_run_alive_but_not_past_the_runs_time_limit(pipeline_from, submit, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from mlopen.runs import workers

    pipeline_from(
        "held",
        """
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            return {}
        """,
    )
    run_id = submit("held", timeout=60)["id"]
    stale = timezone.now() - timedelta(seconds=settings.MLOPEN_HEARTBEAT_TIMEOUT + 1)
    Run.objects.filter(pk=run_id).update(status="running", worker="busy-w1", started_at=stale, heartbeat_at=stale)
    monkeypatch.setattr(workers, "_state", {"name": "busy-w1", "current_run": None, "vouch_until": None})

    # The run's own loop is silent (building its environment, say): the worker's thread vouches for it.
    workers.set_current_run("busy-w1", run_id)
    workers.heartbeat("busy-w1")
    assert workers.fail_lost_runs() == 0
    assert Run.objects.get(pk=run_id).status == "running"

    # Far past its time limit the loop must be stuck; the thread stops vouching and the run is reaped.
    monkeypatch.setattr(workers, "STUCK_AFTER_LIMIT_SECONDS", -(10**6))  # its deadline long past
    workers.set_current_run("busy-w1", run_id)
    Run.objects.filter(pk=run_id).update(heartbeat_at=stale)
    workers.heartbeat("busy-w1")
    assert workers.fail_lost_runs() == 1
    assert Run.objects.get(pk=run_id).status == "failed"


def test_a_worker_asked_to_stop_exits_cleanly_leaving_no_process_folder_or_worker_row(
    pipeline_from, submit, wait_for_run, start_worker
):
    # The worker ends without tearing its interpreter down (mlopen.cli.worker): what a clean exit
    # must still do is done, and nothing it started outlives it.
    pipeline_from(
        "stays_warm",
        """
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            print("served", flush=True)
            return {"text": "ok"}
        """,
    )
    worker = start_worker()
    run = wait_for_run(submit("stays_warm")["id"], timeout=90)
    assert run.status == "succeeded", f"{run.error}\n{worker.log_text()[-3000:]}"
    tree = psutil.Process(worker.process.pid).children(recursive=True)
    assert tree, "the run's warm process (or a blank one) is gone already"
    warm_folder = settings.MLOPEN_WORK_DIR / "warm" / f"worker-{worker.process.pid}"
    assert warm_folder.is_dir()

    worker.process.terminate()
    assert worker.process.wait(timeout=30) == 0
    assert not [process for process in tree if alive(process)]
    assert not warm_folder.exists()
    assert not Worker.objects.filter(name=worker.name).exists()
    assert "Warm shutdown" in worker.log_text()
