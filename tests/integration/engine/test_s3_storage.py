"""S3-compatible storage (MLOPEN_STORAGE_URL=s3://bucket/prefix): every stored file is an object in a
bucket, and each host keeps its own cache of the files it needed as real local files.

The bucket is served by moto's standalone server, a real S3 endpoint over HTTP: this process (the
web server) and a worker process with its own MLOPEN_HOME both talk to it through boto3, exactly
as they would to MinIO or AWS. Nothing of mlopen's is mocked.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from engine_support import database_url, poll
from worker_support import host_network_env, seed_default_runtime

from mlopen.config import s3_storage_options
from mlopen.core import storage
from mlopen.pipelines.models import PipelineVersion, TrainedModel

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True), pytest.mark.slow]

PREFIX = "mlopen-data"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "mlopen-test-key",
    "AWS_SECRET_ACCESS_KEY": "mlopen-test-secret",
    "AWS_S3_REGION_NAME": "us-east-1",
}

SCORED = """
from mlopenapp.utils import io_handler as io
import scoring  # a support file, stored beside the control file

def get_params(run=True):
    return {} if run else {"weight": ("integer", {"default": 1})}

def train(inpt, params=None):
    io.save_pipeline([(params["weight"] * scoring.FACTOR, "weight")], [("words", "unit")], "scored")

def run_pipeline(input, model, args, params=None):
    lines = [line.strip() for line in input.open("r") if line.strip()]
    return {"columns": ["line", "score"], "data": [[line, len(line) * model] for line in lines],
            "text": f"{len(lines)} {args['unit']}"}
"""


@pytest.fixture(scope="module")
def s3_endpoint():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint):
    name = f"mlopen-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=name)

    def keys() -> set[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=name)
        return {entry["Key"] for page in pages for entry in page.get("Contents", ())}

    client.name = name
    client.keys = keys
    return client


@pytest.fixture
def s3_env(s3_endpoint, bucket) -> dict:
    """The environment that points a host at the bucket: all a worker needs besides database and broker."""
    return {"MLOPEN_STORAGE_URL": f"s3://{bucket.name}/{PREFIX}", "AWS_S3_ENDPOINT_URL": s3_endpoint, **CREDENTIALS}


@pytest.fixture
def on_s3(s3_env, settings, monkeypatch, tmp_path):
    """This process (the web server, for the API client) stores its files in the bucket."""
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    settings.MLOPEN_STORAGE_URL = s3_env["MLOPEN_STORAGE_URL"]
    settings.MLOPEN_STORAGE_CACHE_DIR = tmp_path / "web-cache"
    # Django empties its storage handler (default_storage included) when STORAGES changes.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": s3_storage_options(s3_env["MLOPEN_STORAGE_URL"]),
        },
    }
    assert storage.is_remote()
    return settings.MLOPEN_STORAGE_CACHE_DIR


def _host_env(home: Path, s3_env: dict) -> dict:
    """A worker host's environment: the database, the broker and the bucket, and its own MLOPEN_HOME."""
    broker = (
        settings.CELERY_BROKER_URL
        if settings.MLOPEN_BROKER_DIR is None
        else f"filesystem://{settings.MLOPEN_BROKER_DIR}"
    )
    return {
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker,
        "MLOPEN_HOME": str(home),
        **s3_env,
        # Not configuration a host needs: this test session's queue and fast heartbeats.
        "MLOPEN_DEFAULT_QUEUE": settings.MLOPEN_DEFAULT_QUEUE,
        "MLOPEN_HEARTBEAT_INTERVAL": "1",
        # Results in the bucket, however small (by default a small one is kept in the database).
        "MLOPEN_RESULT_IN_DATABASE_KB": "0",
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src"),
        **host_network_env(),
    }


def _files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")} if folder.exists() else set()


def test_a_worker_on_another_host_trains_and_runs_with_only_the_bucket_between_them(
    tmp_path, on_s3, s3_env, bucket, pipeline_from, upload_dataset, submit, wait_for_run, start_worker, api
):
    local_storage_before = _files_under(settings.MLOPEN_STORAGE_DIR)
    remote_home = tmp_path / "remote-host"
    env = _host_env(remote_home, s3_env)
    # Its runtime is there already: building it on a new host is test_scale_out's, and building an
    # environment on a host without it is the next test's.
    seed_default_runtime(remote_home)
    pipeline = pipeline_from("scored", SCORED, files={"scoring.py": "FACTOR = 3\n"})
    dataset = upload_dataset("lines.txt", b"alpha\nbe\ngamma\n")
    worker = start_worker("s3-host-worker", env=env)

    trained = wait_for_run(submit("scored", kind="train", params={"weight": 2})["id"], timeout=90)
    assert trained.status == "succeeded", f"{trained.error}\n{trained.log}\n{worker.log_text()[-3000:]}"
    run = wait_for_run(submit("scored", input=dataset["id"])["id"], timeout=90)
    assert run.status == "succeeded", f"{run.error}\n{run.log}\n{worker.log_text()[-3000:]}"
    assert run.worker == "s3-host-worker"

    # Everything stored is in the bucket under the prefix: code, data, the model, the result.
    model = TrainedModel.objects.get(run=trained)
    version_folder = f"pipelines/{pipeline['id']}/v1"
    keys = bucket.keys()
    assert {
        f"{PREFIX}/{version_folder}/scored.py",
        f"{PREFIX}/{version_folder}/scoring.py",
        f"{PREFIX}/{model.artifact}",
        f"{PREFIX}/{run.result_folder}/table.parquet",
        f"{PREFIX}/{run.result_folder}/result.json",
    } <= keys
    assert any(key.startswith(f"{PREFIX}/datasets/") and key.endswith("/lines.txt") for key in keys)
    # The worker read them through its own cache, and neither host wrote a storage folder.
    worker_cache = remote_home / "storage-cache"
    assert (worker_cache / version_folder / "scoring.py").read_text() == "FACTOR = 3\n"
    assert (worker_cache / model.artifact).is_file()
    assert not (remote_home / "storage").exists()
    assert _files_under(settings.MLOPEN_STORAGE_DIR) == local_storage_before

    # The web server reads the result from the bucket (into its own cache).
    page = api.get(f"/api/v1/runs/{run.pk}/result/")
    assert page.status_code == 200, page.content
    assert page.json()["data"] == [["alpha", 30], ["be", 12], ["gamma", 30]]
    assert page.json()["text"] == "3 words"
    download = api.get(f"/api/v1/runs/{run.pk}/download/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content).decode().splitlines() == ["line,score", "alpha,30", "be,12", "gamma,30"]
    assert (on_s3 / run.result_folder / "table.parquet").is_file()
    dataset_file = api.get(f"/api/v1/datasets/{dataset['id']}/download/")
    assert b"".join(dataset_file.streaming_content) == b"alpha\nbe\ngamma\n"

    # Deleting the dataset deletes its object (and this host's cached copy).
    response = api.delete(f"/api/v1/datasets/{dataset['id']}/")
    assert response.status_code == 204, response.content
    assert not any(key.startswith(f"{PREFIX}/datasets/") for key in bucket.keys())
    assert not (on_s3 / "datasets").exists() or not any((on_s3 / "datasets").rglob("lines.txt"))
    assert worker.process.poll() is None


def test_a_pipeline_environment_is_built_from_the_code_in_the_bucket(
    tmp_path, on_s3, s3_env, pipeline_from, submit, wait_for_run, start_worker, api, run_body
):
    # The worker reads get_params inside the new environment from its cached copy of the version
    # folder, support file included.
    source = """
import tinydb
from helper import GREETING

def get_params(run=False):
    return {"greeting": ("string", {"default": GREETING})} if run else ""

def train(inpt, params=None):
    pass

def run_pipeline(input, model, args, params=None):
    return {"text": f"{params['greeting']} from tinydb {tinydb.__version__}"}
"""
    # The whole environment: uv finds its package index through it as on any host.
    env = {**os.environ, **_host_env(tmp_path / "builder-host", s3_env)}
    worker = start_worker("s3-env-builder", env=env)
    uploaded = pipeline_from(
        "env_in_bucket", source, files={"requirements.txt": "tinydb>=4\n", "helper.py": "GREETING = 'hey'\n"}
    )
    version = poll(
        lambda: (
            (v := PipelineVersion.objects.get(pipeline__name="env_in_bucket")).env_status in ("ready", "failed") and v
        ),
        timeout=180,
        interval=0.2,
        message="the environment is built",
    )
    assert version.env_status == "ready", f"{version.env_log}\n{worker.log_text()[-3000:]}"
    # This host had not built the runtime: it built it first, once, and the environment started as
    # a copy of it instead of a second install of the same lock.
    assert "copy the runtime's environment" in version.env_log and ".runtime.txt" not in version.env_log
    runtime_venv = tmp_path / "builder-host" / "runtimes" / version.runtime.digest[:24]
    assert (runtime_venv / ".mlopen-ready").is_file()
    assert (tmp_path / "builder-host/storage-cache" / version.folder / "helper.py").read_text() == "GREETING = 'hey'\n"
    assert api.get(f"/api/v1/pipelines/{uploaded['id']}/").json()["params"]["run"] == {
        "greeting": {"type": "string", "default": "hey"}
    }
    run = wait_for_run(submit("env_in_bucket")["id"], timeout=60)
    assert run.status == "succeeded", f"{run.error}\n{run.log}"
    assert run_body(run.pk)["result"]["text"].startswith("hey from tinydb 4.")


def test_healthz_reports_the_bucket_and_fails_when_it_cannot_be_reached(on_s3, client, settings, s3_env):
    response = client.get("/healthz")
    assert response.json()["storage"] == "ok"

    options = s3_storage_options(f"s3://mlopen-missing-{uuid.uuid4().hex[:8]}")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
    }
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert "storage" in body["failing"]
    assert body["storage"].startswith("error: s3://mlopen-missing-") and "NoSuchBucket" in body["storage"]


def test_the_system_check_refuses_a_bucket_it_cannot_reach(on_s3, settings):
    from mlopen.core.checks import object_storage_reachable

    assert object_storage_reachable(None) == []
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": s3_storage_options(f"s3://mlopen-missing-{uuid.uuid4().hex[:8]}"),
        },
    }
    errors = object_storage_reachable(None)
    assert [error.id for error in errors] == ["mlopen.E002"]
    assert "cannot be reached" in errors[0].msg and "NoSuchBucket" in errors[0].msg


def test_a_stored_file_is_downloaded_once_into_the_cache_under_its_own_name(on_s3, bucket):
    storage.write_stream("results/1/a.txt", [b"first ", b"version"])
    cached = on_s3 / "results/1/a.txt"
    cached.unlink()  # as on a host that never wrote it

    path = storage.local_path("results/1/a.txt")
    assert path == cached and path.read_bytes() == b"first version"
    # No temporary file is left beside it.
    assert sorted(p.name for p in cached.parent.iterdir()) == ["a.txt"]
    # Stored names are write-once, so a second call uses the cached copy without asking the bucket.
    bucket.put_object(Bucket=bucket.name, Key=f"{PREFIX}/results/1/a.txt", Body=b"changed behind mlopen's back")
    assert storage.local_path("results/1/a.txt").read_bytes() == b"first version"


def test_concurrent_downloads_of_one_file_each_see_a_whole_file(on_s3, bucket):
    payload = os.urandom(3 * 1024 * 1024)
    bucket.put_object(Bucket=bucket.name, Key=f"{PREFIX}/models/1/1-run1.pkl", Body=payload)
    seen: list[bytes] = []

    def read():
        seen.append(storage.local_path("models/1/1-run1.pkl").read_bytes())

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [payload] * 4
    assert [p.name for p in (on_s3 / "models/1").iterdir()] == ["1-run1.pkl"]


def test_a_failed_download_leaves_nothing_in_the_cache_and_says_which_object_is_missing(on_s3):
    with pytest.raises(
        FileNotFoundError,
        match=rf"results/9/none.parquet is missing from storage "
        rf"\(s3://mlopen-\w+/{PREFIX}/results/9/none.parquet\)",
    ):
        storage.local_path("results/9/none.parquet")
    assert not any(p.is_file() for p in on_s3.rglob("*"))
    assert storage.exists("results/9/none.parquet") is False


@pytest.mark.parametrize(
    "name",
    ["../escape.txt", "datasets/../../escape.txt", "/etc/passwd", "datasets//x", "datasets/./x", "datasets\\..\\x", ""],
)
def test_names_that_could_leave_the_bucket_prefix_or_the_cache_are_refused(on_s3, name):
    with pytest.raises(ValueError, match="refusing storage name"):
        storage.local_path(name)
    with pytest.raises(ValueError, match="refusing storage name"):
        storage.write_stream(name, [b"x"])
    with pytest.raises(ValueError, match="refusing storage name"):
        storage.delete_tree(name)


def test_delete_tree_deletes_every_object_under_the_folder_and_evicts_the_cache(on_s3, bucket):
    storage.write_stream("pipelines/5/v1/control.py", [b"x = 1\n"])
    storage.write_stream("pipelines/5/v1/sub/helper.py", [b"y = 2\n"])
    storage.write_stream("pipelines/5/v10/control.py", [b"z = 3\n"])  # shares a prefix, not the folder
    folder = storage.local_folder("pipelines/5/v1")
    assert (folder / "sub/helper.py").read_bytes() == b"y = 2\n"

    storage.delete_tree("pipelines/5/v1")

    assert bucket.keys() == {f"{PREFIX}/pipelines/5/v10/control.py"}
    assert not folder.exists()
    assert storage.local_path("pipelines/5/v10/control.py").read_bytes() == b"z = 3\n"


def test_a_folder_is_fetched_whole_for_a_host_that_never_saw_it(on_s3, bucket, tmp_path, settings):
    for name, body in {"control.py": b"import helper\n", "helper.py": b"X = 1\n"}.items():
        bucket.put_object(Bucket=bucket.name, Key=f"{PREFIX}/pipelines/7/v2/{name}", Body=body)

    folder = storage.local_folder("pipelines/7/v2")

    assert folder == on_s3 / "pipelines/7/v2"
    assert (folder / "helper.py").read_bytes() == b"X = 1\n" and (folder / "control.py").is_file()
    with pytest.raises(FileNotFoundError, match="nothing is stored under"):
        storage.local_folder("pipelines/7/v3")


def test_a_bad_storage_url_is_refused_at_start_with_what_is_wrong(monkeypatch):
    from mlopen.config import ConfigError

    for url in ("s3:/bucket", "http://bucket/x", "s3://", "s3://bucket/../x"):
        with pytest.raises(ConfigError, match="MLOPEN_STORAGE_URL"):
            s3_storage_options(url)
    monkeypatch.setenv("AWS_S3_ENDPOINT_URL", "minio:9000")
    with pytest.raises(ConfigError, match="AWS_S3_ENDPOINT_URL must be an http"):
        s3_storage_options("s3://bucket")
    monkeypatch.setenv("AWS_S3_ENDPOINT_URL", "http://minio:9000")
    options = s3_storage_options("s3://bucket/some/prefix/")
    assert (options["bucket_name"], options["location"], options["file_overwrite"]) == ("bucket", "some/prefix", True)


def test_the_folder_storage_is_untouched_by_default_and_still_guards_its_folder(tmp_path):
    from django.core.exceptions import SuspiciousFileOperation

    assert not storage.is_remote()
    assert default_storage.location == str(settings.MLOPEN_STORAGE_DIR)
    assert storage.local_path("datasets/1/x/a.csv") == settings.MLOPEN_STORAGE_DIR / "datasets/1/x/a.csv"
    with pytest.raises(SuspiciousFileOperation):
        storage.write_stream("../escape.txt", [b"x"])
    # A link inside the folder that points out of it is caught once resolved.
    settings.MLOPEN_STORAGE_DIR.mkdir(parents=True, exist_ok=True)
    link = settings.MLOPEN_STORAGE_DIR / f"link-{uuid.uuid4().hex}"
    link.symlink_to(tmp_path)
    try:
        with pytest.raises(ValueError, match="outside storage"):
            storage.write_stream(f"{link.name}/escape.txt", [b"x"])
    finally:
        link.unlink()
    assert not (tmp_path / "escape.txt").exists()
