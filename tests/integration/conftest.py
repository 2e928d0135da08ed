"""Fixtures shared by the integration tests of every layer: pipelines written inline, runs started.

Pipelines are written inline as source so each test reads as one story: the pipeline, the
request, what came of it.
"""

from __future__ import annotations

import textwrap

import pytest


@pytest.fixture
def pipeline_from(api):
    """Upload a control file given as source (dedented); return the API's pipeline body.

    ``requirements`` is sent as the upload's requirements field; ``files`` as support files.
    """
    from django.core.files.uploadedfile import SimpleUploadedFile

    def upload(
        name: str,
        source: str,
        *,
        requirements: str | None = None,
        files: dict[str, str] | None = None,
        expect: int = 201,
    ):
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

    def post(pipeline: str, *, kind: str = "run", expect: int = 201, client=None, **fields):
        response = (client or api).post("/api/v1/runs/", {"pipeline": pipeline, "kind": kind, **fields}, format="json")
        assert response.status_code == expect, response.content
        return response.json()

    return post
