"""Upload denial of service (the Django CVE-2023-24580 class): size and part-count limits hold,
the server keeps answering, and nothing partial is stored."""

from __future__ import annotations

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mlopen.datasets.models import Dataset

pytestmark = pytest.mark.django_db


def _stored_files(settings) -> list[str]:
    root = settings.MLOPEN_STORAGE_DIR
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def test_upload_announced_over_the_limit_is_413_naming_the_limit(api, settings):
    settings.MLOPEN_MAX_UPLOAD_MB = 1
    before = _stored_files(settings)
    big = SimpleUploadedFile("big.csv", b"a,b\n" + b"1,2\n" * 700_000)
    response = api.post("/api/v1/datasets/", {"file": big, "name": "big"}, format="multipart")
    assert response.status_code == 413
    assert "1 MB" in response.json()["detail"]
    assert Dataset.objects.count() == 0
    assert _stored_files(settings) == before
    assert api.get("/api/v1/datasets/").status_code == 200


def test_upload_streamed_past_the_limit_is_stopped_while_streaming(api, settings):
    settings.MLOPEN_MAX_UPLOAD_MB = 1
    before = _stored_files(settings)
    # 1.5 MB passes the announced-size check (which leaves 1 MB for the multipart envelope), so
    # only the upload handler counting the bytes as they stream in can stop it.
    big = SimpleUploadedFile("big.csv", b"x" * (1536 * 1024))
    response = api.post("/api/v1/datasets/", {"file": big}, format="multipart")
    assert response.status_code == 413
    assert "MLOPEN_MAX_UPLOAD_MB" in response.json()["detail"]
    assert Dataset.objects.count() == 0
    assert _stored_files(settings) == before


def test_upload_with_too_many_parts_is_refused(api, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    files = [SimpleUploadedFile(f"s{i}.py", b"x = 1\n") for i in range(5)]
    control = SimpleUploadedFile("p.py", b"def train(i, p=None): pass\ndef run_pipeline(i, m, a, p=None): return {}\n")
    response = api.post("/api/v1/pipelines/", {"control": control, "support_files": files}, format="multipart")
    assert 400 <= response.status_code < 500
    assert api.get("/api/v1/pipelines/").status_code == 200


def test_a_form_with_too_many_fields_is_refused(api, client, admin_user, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 50
    fields = {f"f{i}": "x" for i in range(200)}
    response = api.post("/api/v1/runs/", fields)
    assert response.status_code == 400
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in response.json()["detail"]
    client.force_login(admin_user)
    assert client.post("/runs/new/", fields).status_code == 400
    assert api.get("/api/v1/runs/").status_code == 200


def test_the_upload_page_answers_413_past_the_limit(client, admin_user, settings):
    settings.MLOPEN_MAX_UPLOAD_MB = 1
    client.force_login(admin_user)
    big = SimpleUploadedFile("big.csv", b"x" * (1536 * 1024))
    response = client.post("/datasets/upload/", {"file": big, "name": "big"})
    assert response.status_code == 413
    assert b"1 MB limit" in response.content
    assert Dataset.objects.count() == 0
