"""Scale-out: a worker needs only the database, the broker and the shared storage folder, and
queues route a pipeline's runs to the workers that serve them (a GPU host, say).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from engine_support import database_url, poll
from worker_support import host_network_env

from mlopen.pipelines.models import Pipeline
from mlopen.runs.models import Run, Worker

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True), pytest.mark.slow]

READS_INPUT = """
def train(inpt, params=None):
    pass
def run_pipeline(input, model, args, params=None):
    return {"text": input.read().decode().strip()}
"""


def _shared_broker_url() -> str:
    # Redis or RabbitMQ: the URL itself is what workers share. The folder broker: the URL names
    # the web server's broker folder, since this worker's own MLOPEN_HOME holds none of it.
    if settings.MLOPEN_BROKER_DIR is None:
        return settings.CELERY_BROKER_URL
    return f"filesystem://{settings.MLOPEN_BROKER_DIR}"


def test_a_worker_with_its_own_home_takes_runs_given_only_database_broker_and_storage(
    tmp_path, pipeline_from, upload_dataset, submit, wait_for_run, start_worker
):
    remote_home = tmp_path / "remote-host"
    env = {
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": _shared_broker_url(),
        "MLOPEN_STORAGE_DIR": str(settings.MLOPEN_STORAGE_DIR),
        "MLOPEN_HOME": str(remote_home),
        # Not configuration a host needs: this test session's queue and fast heartbeats.
        "MLOPEN_DEFAULT_QUEUE": settings.MLOPEN_DEFAULT_QUEUE,
        "MLOPEN_HEARTBEAT_INTERVAL": "1",
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src"),
        **host_network_env(),
    }
    pipeline_from("reader", READS_INPUT)
    dataset = upload_dataset("greeting.txt", b"hello from shared storage\n")
    remote = start_worker("remote-host-worker", env=env)

    run = wait_for_run(submit("reader", input=dataset["id"])["id"], timeout=60)

    assert run.status == "succeeded", f"{run.error}\n{run.log}"
    assert run.worker == "remote-host-worker"
    assert Worker.objects.filter(name="remote-host-worker").exists()
    # It kept its own scratch space and used no database or broker folder of its own.
    assert (remote_home / "work").is_dir()
    assert not (remote_home / "db.sqlite3").exists() and not (remote_home / "broker").exists()
    assert remote.process.poll() is None


def test_a_pipeline_on_the_gpu_queue_is_taken_only_by_a_worker_serving_that_queue(
    pipeline_from, submit, wait_for_run, start_worker
):
    # Queue names carry this test session's prefix so parallel sessions sharing one Redis stay apart.
    gpu = f"{settings.MLOPEN_DEFAULT_QUEUE}-gpu"
    pipeline_from("on_gpu", READS_INPUT.replace("input.read().decode().strip()", "'gpu'"))
    Pipeline.objects.filter(name="on_gpu").update(queue=gpu)
    pipeline_from("on_cpu", READS_INPUT.replace("input.read().decode().strip()", "'cpu'"))
    cpu_worker = start_worker()

    gpu_run = submit("on_gpu")
    cpu_run = wait_for_run(submit("on_cpu")["id"], timeout=60)

    # The default worker took the run submitted after the GPU one, and left the GPU one queued.
    assert (cpu_run.status, cpu_run.worker) == ("succeeded", cpu_worker.name)
    assert (gpu_run["queue"], Run.objects.get(pk=gpu_run["id"]).status) == (gpu, "queued")
    gpu_worker = start_worker(queues=gpu)
    done = wait_for_run(gpu_run["id"], timeout=60)
    assert (done.status, done.worker, done.attempt) == ("succeeded", gpu_worker.name, 1)
    assert Worker.objects.get(name=gpu_worker.name).queues == [gpu]


def test_the_admin_worker_list_shows_each_live_worker_with_the_run_it_is_running(
    pipeline_from, submit, api, admin_user, module_worker, client
):
    pipeline_from(
        "busy",
        """
        import time
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            print("started", flush=True)
            time.sleep(300)
        """,
    )
    run = submit("busy")
    poll(lambda: Run.objects.get(pk=run["id"]).status == "running", timeout=60, message="the run started")
    client.force_login(admin_user)
    try:
        page = client.get("/admin/runs/worker/").content.decode()

        assert module_worker.name in page
        assert f"/admin/runs/run/{run['id']}/change/" in page
        assert f"run {run['id']}" in page
        # The worker's own row learns it from its heartbeat (every second in the tests).
        poll(
            lambda: Worker.objects.get(name=module_worker.name).current_run_id == run["id"],
            timeout=30,
            message="the heartbeat recorded the worker's current run",
        )
    finally:
        api.post(f"/api/v1/runs/{run['id']}/cancel/")
