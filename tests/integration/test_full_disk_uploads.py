"""Uploads on a full disk answer 507 in plain words, API and pages alike, and lose nothing.

What was stored before stays; what the refused upload had written so far is removed; no row
points at a missing file.
"""

from __future__ import annotations

import errno
import html
import os
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.test import Client

from mlopen.core import storage
from mlopen.datasets.models import Dataset
from mlopen.pipelines.models import PipelineVersion

pytestmark = pytest.mark.django_db

STORAGE_FULL = "The server's storage is full"
CONTROL = (
    "def train(inpt, params=None):\n    pass\n\ndef run_pipeline(input, model, args, params=None):\n    return {}\n"
)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def own_storage(request, tmp_path, settings, monkeypatch):
    """A storage folder of this test's own (on the tiny disk, for a test that asks for one): files
    other tests left (their rows rolled back, their files not) must not pass for this test's, nor
    be counted as lost."""
    folder = request.getfixturevalue("tiny_disk") if "tiny_disk" in request.fixturenames else tmp_path / "storage"
    monkeypatch.setattr(default_storage, "location", str(folder))
    settings.MLOPEN_STORAGE_DIR = folder
    return folder


def stored_files() -> set[str]:
    root = Path(settings.MLOPEN_STORAGE_DIR)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.fixture
def disk_fills_up(monkeypatch):
    """Fills the disk: from the `after`-th file stored from now on (1: the next one), each write
    fails one chunk in, the staged part already on disk. Until called, the disk is full at once."""
    real_stage = storage.stage_stream
    state = {"after": 1, "calls": 0}

    def stage_stream(storage_name, chunks):
        state["calls"] += 1
        if state["calls"] < state["after"]:
            return real_stage(storage_name, chunks)

        def one_chunk_then_full():
            yield b"first chunk, on disk\n"
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return real_stage(storage_name, one_chunk_then_full())

    monkeypatch.setattr(storage, "stage_stream", stage_stream)
    return lambda after: state.update(after=after, calls=0)


def test_a_dataset_upload_on_a_full_disk_answers_507_and_keeps_what_was_stored(api, disk_fills_up):
    disk_fills_up(after=2)
    first = api.post("/api/v1/datasets/", {"file": SimpleUploadedFile("a.csv", b"x\n1\n")}, format="multipart")
    before = stored_files()

    response = api.post("/api/v1/datasets/", {"file": SimpleUploadedFile("b.csv", b"x\n2\n")}, format="multipart")

    assert response.status_code == 507
    body = response.json()
    assert body["detail"].startswith(STORAGE_FULL)
    assert body["errors"] == {"file": body["detail"]}
    assert list(Dataset.objects.values_list("pk", flat=True)) == [first.json()["id"]]
    assert stored_files() == before  # the staged half of b.csv is gone, a.csv is whole
    assert storage.open_stored(Dataset.objects.get().file).read() == b"x\n1\n"


def test_the_dataset_upload_form_on_a_full_disk_shows_the_message_with_status_507(client, user, disk_fills_up):
    client.force_login(user)
    before = stored_files()

    response = client.post("/datasets/upload/", {"file": SimpleUploadedFile("b.csv", b"x\n2\n"), "name": "b"})

    assert response.status_code == 507
    assert STORAGE_FULL in html.unescape(response.content.decode())
    assert not Dataset.objects.exists()
    assert stored_files() == before


def test_a_pipeline_upload_on_a_full_disk_answers_507_and_leaves_the_earlier_version_whole(api, disk_fills_up):
    disk_fills_up(after=3)  # version 1's file and version 2's control file fit; its support file does not
    files = {"control": SimpleUploadedFile("iris.py", CONTROL.encode())}
    assert api.post("/api/v1/pipelines/", files, format="multipart").status_code == 201
    before = stored_files()

    response = api.post(
        "/api/v1/pipelines/",
        {
            "control": SimpleUploadedFile("iris.py", CONTROL.encode()),
            "support_files": [SimpleUploadedFile("helpers.py", b"X = 1\n")],
        },
        format="multipart",
    )

    assert response.status_code == 507
    assert response.json()["detail"].startswith(STORAGE_FULL)
    assert list(PipelineVersion.objects.values_list("number", flat=True)) == [1]
    assert stored_files() == before
    assert list((settings.MLOPEN_WORK_DIR / "uploads").iterdir()) == []


def test_the_pipeline_upload_form_on_a_full_disk_shows_the_message_with_status_507(client, admin_user, disk_fills_up):
    client.force_login(admin_user)

    response = client.post("/pipelines/upload/", {"control": SimpleUploadedFile("iris.py", CONTROL.encode())})

    assert response.status_code == 507
    assert STORAGE_FULL in html.unescape(response.content.decode())
    assert not PipelineVersion.objects.exists()


def test_an_upload_that_cannot_be_received_on_a_full_disk_answers_507_in_the_apis_json(api, monkeypatch):
    # Django writes a large upload to a temporary file while the request is read, before any view
    # code: a full disk there reaches the API's error handling, not Django's HTML 500.
    def full(self, raw_data, start):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", full)
    big = SimpleUploadedFile("big.csv", b"x" * (settings.FILE_UPLOAD_MAX_MEMORY_SIZE + 1))

    response = api.post("/api/v1/datasets/", {"file": big}, format="multipart")

    assert response.status_code == 507
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"].startswith(STORAGE_FULL)
    assert not Dataset.objects.exists()


def test_a_form_upload_that_cannot_be_received_on_a_full_disk_answers_a_507_page(user, monkeypatch):
    def full(self, raw_data, start):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", full)
    client = Client(raise_request_exception=False)  # read before the view: handler500's to answer
    client.force_login(user)
    big = SimpleUploadedFile("big.csv", b"x" * (settings.FILE_UPLOAD_MAX_MEMORY_SIZE + 1))

    response = client.post("/datasets/upload/", {"file": big, "name": "big"})

    assert response.status_code == 507
    assert STORAGE_FULL in html.unescape(response.content.decode())


def test_a_dataset_upload_that_fills_a_real_disk_answers_507_and_keeps_the_dataset_before_it(api, tiny_disk):
    small = api.post("/api/v1/datasets/", {"file": SimpleUploadedFile("a.csv", b"x\n1\n")}, format="multipart")
    assert small.status_code == 201, small.content
    before = stored_files()

    too_big = SimpleUploadedFile("b.csv", b"x\n" + b"1\n" * (3 * 1024 * 1024 // 2))
    response = api.post("/api/v1/datasets/", {"file": too_big}, format="multipart")

    assert response.status_code == 507, response.content
    assert response.json()["detail"].startswith(f"{STORAGE_FULL} (")
    assert list(Dataset.objects.values_list("pk", flat=True)) == [small.json()["id"]]
    assert stored_files() == before
    assert storage.open_stored(Dataset.objects.get().file).read() == b"x\n1\n"
