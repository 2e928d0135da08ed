"""Fixtures for the engine tests: real `mlopen worker` processes executing real child processes.

Every engine test is transactional (a worker only sees committed rows). Pipelines are written
inline as source so each test reads as one story: the pipeline, the request, what came of it.
"""

from __future__ import annotations

import textwrap

import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Each test creates its admin afresh (tables are emptied between tests); the default hasher
    # would spend half a second on each password.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def pipeline_from(api):
    """Upload a control file given as source (dedented); return the API's pipeline body.

    ``requirements`` is sent as the upload's requirements field; ``files`` as support files.
    """
    from django.core.files.uploadedfile import SimpleUploadedFile

    def upload(name: str, source: str, *, requirements: str | None = None, files: dict[str, str] | None = None,
               expect: int = 201):
        data = {"control": SimpleUploadedFile(f"{name}.py", textwrap.dedent(source).encode())}
        if requirements is not None:
            data["requirements"] = SimpleUploadedFile("requirements.txt", requirements.encode())
        if files:
            data["support_files"] = [SimpleUploadedFile(n, text.encode()) for n, text in files.items()]
        response = api.post("/api/v1/pipelines/", data, format="multipart")
        assert response.status_code == expect, response.content
        return response.json()

    return upload


@pytest.fixture
def submit(api):
    """POST /api/v1/runs/; return the run's body."""

    def post(pipeline: str, *, kind: str = "run", expect: int = 201, **fields):
        response = api.post("/api/v1/runs/", {"pipeline": pipeline, "kind": kind, **fields}, format="json")
        assert response.status_code == expect, response.content
        return response.json()

    return post


@pytest.fixture
def run_body(api):
    """GET /api/v1/runs/<id>/."""

    def get(run_id: int) -> dict:
        response = api.get(f"/api/v1/runs/{run_id}/")
        assert response.status_code == 200, response.content
        return response.json()

    return get


@pytest.fixture
def unserved_queue():
    """A queue no worker of this session serves; whatever is left in it is purged afterwards."""
    from django.conf import settings

    from mlopen.celery_app import app

    name = f"{settings.MLOPEN_DEFAULT_QUEUE}-unserved"
    yield name
    with app.connection_for_write() as connection:
        try:
            connection.default_channel.queue_purge(name)
        except Exception:  # noqa: BLE001 - a queue never declared has nothing to purge
            pass
