"""Lost messages: nothing stays queued or building forever because the broker lost its message
(Redis restarted without persistence, a folder-broker file deleted, a publish that failed).

Every live worker sweeps on each heartbeat (mlopen.runs.sweep.requeue_lost_messages): a queued
run is sent again when its last message is older than MLOPEN_REQUEUE_SECONDS, on age alone (busy
workers cannot starve a lost run), the wait doubling at each re-send so runs waiting behind a
backlog get few duplicates; at once when it could never be sent. An environment build is sent
again when a live worker of its queue sat idle that long, or when the worker building it died. A
duplicate is harmless either way: a run is claimed once, a build is idempotent.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from engine_support import poll

from mlopen.celery_app import app
from mlopen.core.tokens import create_token
from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen.pipelines.tasks import build_environment
from mlopen.runs import sweep
from mlopen.runs.models import Run, Worker

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True), pytest.mark.slow]

REQUEUE_SECONDS = 2
# Environments are cached by their requirements for the whole session: these tests use requirements
# of their own (tinydb>=3.0, tinydb>=3.1), so test_environments still sees its own built afresh.
FAST_REQUEUE = {"MLOPEN_REQUEUE_SECONDS": str(REQUEUE_SECONDS)}

QUICK = """
def train(inpt, params=None):
    pass
def run_pipeline(input, model, args, params=None):
    print("ran", flush=True)
    return {"text": "ran"}
"""

SLOW = """
import time
def train(inpt, params=None):
    pass
def run_pipeline(input, model, args, params=None):
    time.sleep(3)
    return {"text": "done"}
"""

USES_TINYDB = """
def train(inpt, params=None):
    pass
def run_pipeline(input, model, args, params=None):
    import tinydb
    return {"text": f"tinydb {tinydb.__version__}"}
"""

# A web request, made in a process of its own whose broker is down (argv: token, what to do, name).
REQUEST_WITH_BROKER_DOWN = """
import json, sys
import django
django.setup()
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient
token, action, name = sys.argv[1:4]
client = APIClient()
client.credentials(HTTP_AUTHORIZATION="Token " + token)
if action == "submit":
    response = client.post("/api/v1/runs/", {"pipeline": name}, format="json")
else:
    response = client.post("/api/v1/pipelines/", {
        "control": SimpleUploadedFile(name + ".py", sys.stdin.read().encode()),
        "requirements": SimpleUploadedFile("requirements.txt", b"tinydb>=3.0\\n")}, format="multipart")
print(json.dumps({"status": response.status_code, "body": response.json()}))
"""

_RESENT_RUNS = re.compile(r"re-sent \d+ queued run\(s\) whose message is over .*?: ([\d, ]+)$", re.MULTILINE)
_RESENT_BUILDS = "re-sent the environment build of 1 pipeline version(s) left building with no worker on it: {}"


def _purge(queue: str) -> int:
    """Drop every message waiting in ``queue``; return how many there were (as a broker losing them)."""
    with app.connection_for_write() as broker:
        return broker.default_channel.queue_purge(queue) or 0


def _resent_runs(*processes) -> list[int]:
    """The runs the workers' sweeps re-sent, from their logs (one entry per re-send)."""
    return sorted(
        int(run_id)
        for process in processes
        for match in _RESENT_RUNS.finditer(process.log_text())
        for run_id in match.group(1).split(",")
    )


def _version(pipeline_name: str) -> PipelineVersion:
    return PipelineVersion.objects.get(pipeline__name=pipeline_name)


def _built(pipeline_name: str, timeout: float = 240) -> PipelineVersion:
    return poll(
        lambda: (v := _version(pipeline_name)).env_status != "building" and v,
        timeout=timeout,
        interval=0.2,
        message=f"the environment of {pipeline_name} is no longer building",
    )


def _request_with_broker_down(worker, user, action: str, name: str, stdin: str = "") -> tuple[dict, str]:
    """Make a request in a process configured like ``worker`` but with a broker nobody listens on;
    return the answer (status and body) and what the process logged."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**worker.env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0", "MLOPEN_WORKER_NAME": ""}
    token = create_token(user, "requeue test")[1]
    done = subprocess.run(
        [sys.executable, "-c", REQUEST_WITH_BROKER_DOWN, token, action, name],
        input=stdin,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


# --- Runs, with real workers --------------------------------------------------------------------


def test_a_queued_run_whose_message_was_lost_is_sent_again_and_runs_once(
    pipeline_from, submit, wait_for_run, start_worker
):
    pipeline_from("lost", QUICK)
    run = submit("lost")
    assert _purge(run["queue"]) == 1  # no worker was running: the broker held it, and loses it

    worker = start_worker(extra_env=FAST_REQUEUE)
    finished = wait_for_run(run["id"], timeout=90)

    assert (finished.status, finished.attempt, finished.log) == ("succeeded", 1, "ran\n")
    assert _resent_runs(worker) == [run["id"]]
    assert f"run {run['id']} not claimed" not in worker.log_text()  # one message, not two


def test_runs_waiting_behind_a_busy_worker_get_few_duplicate_messages_and_each_runs_once(
    pipeline_from, submit, wait_for_run, start_worker
):
    busy = start_worker(extra_env=FAST_REQUEUE)
    pipeline_from("slow", SLOW)

    ids = [submit("slow")["id"] for _ in range(4)]
    runs = [wait_for_run(run_id, timeout=180) for run_id in ids]

    assert [(r.status, r.attempt, r.worker) for r in runs] == [("succeeded", 1, busy.name)] * 4
    # The premise: the last run waited for several requeue periods behind the others (3 s each).
    waited = (runs[-1].started_at - runs[-1].created_at).total_seconds()
    assert waited > 3 * REQUEUE_SECONDS
    # On age alone a waiting run is re-sent too, but the wait doubles: after 2, 4, 8... s, so a run
    # that waited W s got at most log2(W / 2) + 1 duplicates, each skipped by the worker.
    resent = _resent_runs(busy)
    for run in runs:
        run_waited = (run.started_at - run.created_at).total_seconds()
        assert resent.count(run.pk) <= max(0, math.log2(max(run_waited, 1) / REQUEUE_SECONDS)) + 1
    assert busy.log_text().count("not claimed") <= len(resent)


def test_a_run_submitted_while_the_broker_is_down_is_accepted_and_sent_once_it_can_be(
    pipeline_from, wait_for_run, start_worker, api
):
    worker = start_worker(extra_env=FAST_REQUEUE)
    pipeline_from("patient", QUICK)

    answer, logged = _request_with_broker_down(worker, api.user, "submit", "patient")
    run_id = answer["body"]["id"]
    finished = wait_for_run(run_id, timeout=90)

    assert (answer["status"], answer["body"]["status"]) == (201, "queued")
    assert f"run {run_id} is queued but could not be sent to the broker (OperationalError: " in logged
    assert "Traceback" not in logged
    assert (finished.status, finished.attempt) == ("succeeded", 1)
    assert f"sent 1 queued run(s) that could not be sent when submitted (or were put back): {run_id}" in (
        worker.log_text()
    )
    assert _resent_runs(worker) == []


# --- Environment builds, with real workers ------------------------------------------------------


def test_a_pipeline_uploaded_while_the_broker_is_down_gets_its_environment_built_once_it_can_be(
    start_worker, api, submit, wait_for_run
):
    worker = start_worker(extra_env=FAST_REQUEUE)

    answer, logged = _request_with_broker_down(worker, api.user, "upload", "late_env", stdin=USES_TINYDB)
    assert (answer["status"], answer["body"]["versions"][0]["env_status"]) == (201, "building"), answer
    version = _built("late_env")

    assert "could not be sent to the broker (OperationalError: " in logged
    assert "Traceback" not in logged
    assert version.env_status == "ready", version.env_log
    assert (
        f"sent the environment build of 1 pipeline version(s) that could not be sent at upload: {version.pk}"
        in worker.log_text()
    )
    assert "re-sent" not in worker.log_text()
    assert wait_for_run(submit("late_env")["id"], timeout=90).status == "succeeded"


def test_an_environment_build_whose_message_was_lost_is_sent_again(
    pipeline_from, submit, wait_for_run, start_worker, unserved_queue
):
    # The build message goes to a queue no worker serves; then the pipeline moves to the default
    # queue, whose workers never saw the message: for them it is lost.
    Pipeline.objects.create(name="stranded_env", queue=unserved_queue)
    pipeline_from("stranded_env", USES_TINYDB, requirements="tinydb>=3.0\n")
    assert _version("stranded_env").env_status == "building"
    Pipeline.objects.filter(name="stranded_env").update(queue="")

    worker = start_worker(extra_env=FAST_REQUEUE)
    version = _built("stranded_env")

    assert version.env_status == "ready", version.env_log
    assert _RESENT_BUILDS.format(version.pk) in worker.log_text()
    run = wait_for_run(submit("stranded_env")["id"], timeout=90)
    assert run.status == "succeeded", f"{run.error}\n{run.log}"

    # A duplicate build message (the lost one turning up after all) changes nothing.
    build_environment.apply_async(kwargs={"version_id": version.pk}, queue=settings.MLOPEN_DEFAULT_QUEUE)
    poll(
        lambda: f"environment build of pipeline version {version.pk} skipped: already ready" in worker.log_text(),
        timeout=60,
        message="the duplicate build message was received",
    )
    again = _version("stranded_env")
    assert (again.env_status, again.env_log, again.params_run) == ("ready", version.env_log, version.params_run)


def test_a_build_whose_worker_died_is_built_again_by_another(pipeline_from, start_worker):
    # A package index that accepts connections and never answers: the build hangs in uv.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    try:
        doomed = start_worker(
            extra_env={
                **FAST_REQUEUE,
                "UV_HTTP_TIMEOUT": "600",
                "UV_INDEX_URL": f"http://127.0.0.1:{hole.getsockname()[1]}/simple",
            }
        )
        pipeline_from("orphan_env", USES_TINYDB, requirements="tinydb>=3.1\n")
        poll(lambda: _version("orphan_env").env_heartbeat_at is not None, timeout=60, message="the build started")
        os.killpg(doomed.process.pid, signal.SIGKILL)  # the worker and its uv, as when a host is lost
        doomed.process.wait()
        assert _version("orphan_env").env_status == "building"

        rescuer = start_worker(extra_env=FAST_REQUEUE)
        version = _built("orphan_env")
    finally:
        hole.close()

    assert version.env_status == "ready", version.env_log
    assert _RESENT_BUILDS.format(version.pk) in rescuer.log_text()


# --- The sweep itself, in this process ----------------------------------------------------------


@pytest.fixture
def sweep_queues():
    """Four queues no worker consumes; the sweep's messages to them are purged afterwards."""
    names = [f"{settings.MLOPEN_DEFAULT_QUEUE}-sweep-{letter}" for letter in "abcd"]
    yield names
    for name in names:
        _purge(name)


def _queued_run(pipeline: Pipeline, owner, queue: str, enqueued_at, status: str = "queued", created=None) -> int:
    pk = Run.objects.create(
        pipeline=pipeline,
        version=pipeline.latest_version,
        kind="run",
        owner=owner,
        queue=queue,
        enqueued_at=enqueued_at,
        status=status,
    ).pk
    if created is not None:  # created_at is auto_now_add: set afterwards
        Run.objects.filter(pk=pk).update(created_at=created)
    return pk


def test_the_sweep_re_sends_queued_runs_on_age_alone_waiting_twice_as_long_after_each_re_send(
    pipeline_from, api, sweep_queues
):
    qa, qb, _qc, _qd = sweep_queues
    pipeline = Pipeline.objects.get(pk=pipeline_from("swept", QUICK)["id"])
    now = timezone.now()

    def ago(seconds: float):
        return now - timedelta(seconds=seconds)

    # Whatever the workers of its queue do: busy ones cannot starve a lost run.
    Worker.objects.create(name="busy-b", queues=[qb], last_seen=now, idle_since=None)
    lost = _queued_run(pipeline, api.user, qa, ago(90), created=ago(90))
    behind_busy = _queued_run(pipeline, api.user, qb, ago(90), created=ago(90))
    never_sent = _queued_run(pipeline, api.user, qb, None)
    # Re-sent once after waiting 100 s: the next re-send waits 100 s more, not 60.
    resent_once = _queued_run(pipeline, api.user, qa, ago(90), created=ago(190))
    left = [
        _queued_run(pipeline, api.user, qa, ago(30)),  # its message may still be on its way
        _queued_run(pipeline, api.user, qa, ago(90), status="running"),
        resent_once,
    ]
    before = dict(Run.objects.values_list("pk", "enqueued_at"))

    first = sweep.requeue_lost_runs(wait=60)
    second = sweep.requeue_lost_runs(wait=60)

    assert first == sorted([lost, behind_busy, never_sent])
    assert second == []  # stamped: not again before the next period
    after = dict(Run.objects.values_list("pk", "enqueued_at"))
    assert all(after[pk] > now for pk in first)
    assert [after[pk] for pk in left] == [before[pk] for pk in left]
    assert [_purge(queue) for queue in sweep_queues] == [1, 2, 0, 0]


def test_of_two_sweeps_at_once_each_lost_run_is_re_sent_by_one(pipeline_from, api, sweep_queues):
    qa = sweep_queues[0]
    pipeline = Pipeline.objects.get(pk=pipeline_from("raced", QUICK)["id"])
    now = timezone.now()
    Worker.objects.create(name="idle-a", queues=[qa], last_seen=now, idle_since=now - timedelta(seconds=120))
    ids = [_queued_run(pipeline, api.user, qa, now - timedelta(seconds=90)) for _ in range(20)]
    start = threading.Barrier(2)
    results: list[list[int]] = []

    def sweep_once() -> None:
        try:
            start.wait()
            results.append(sweep.requeue_lost_runs(wait=60))
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep_once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(results) == 2
    assert sorted(results[0] + results[1]) == sorted(ids)
    assert _purge(qa) == 20


def test_the_sweep_re_sends_a_build_only_when_nobody_is_building_it(pipeline_from, sweep_queues):
    qa = sweep_queues[0]
    pipeline = Pipeline.objects.get(pk=pipeline_from("half_built", QUICK)["id"])
    Pipeline.objects.filter(pk=pipeline.pk).update(queue=qa)
    now = timezone.now()
    Worker.objects.create(name="idle-a", queues=[qa], last_seen=now, idle_since=now - timedelta(seconds=120))
    version = PipelineVersion.objects.filter(pipeline=pipeline)
    version.update(
        env_status="building",
        requirements="tinydb\n",
        env_requested_at=now - timedelta(seconds=90),
        env_heartbeat_at=now,
    )

    assert sweep.requeue_lost_builds(wait=60) == []  # a live worker is building it

    version.update(env_heartbeat_at=now - timedelta(seconds=settings.MLOPEN_HEARTBEAT_TIMEOUT + 1))
    assert sweep.requeue_lost_builds(wait=60) == [version.get().pk]  # that worker stopped heartbeating
    assert sweep.requeue_lost_builds(wait=60) == []
    assert _purge(qa) == 1
