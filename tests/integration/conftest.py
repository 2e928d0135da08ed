"""Fixtures shared by the integration tests of every layer: pipelines written inline, runs started.

Pipelines are written inline as source so each test reads as one story: the pipeline, the
request, what came of it.
"""

from __future__ import annotations

import textwrap

import pytest


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart body with file names exactly as given, folders included (Django's test client
    would keep only the last part of each name). Returns (body, content type)."""
    boundary = "mlopen-test-boundary"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for field, filename, content in files:
        header = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(header.encode("utf-8", "surrogateescape") + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@pytest.fixture
def pipeline_from(api):
    """Upload a control file given as source (dedented); return the API's pipeline body.

    ``requirements`` is sent as the upload's requirements field; ``files`` as support files, each
    under its path ({"textnet/model.py": "..."} ships a subpackage); ``runtime`` as its runtime field.
    """

    def upload(
        name: str,
        source: str,
        *,
        requirements: str | None = None,
        files: dict[str, str | bytes] | None = None,
        runtime: str | None = None,
        expect: int = 201,
    ):
        sent = [("control", f"{name}.py", textwrap.dedent(source).encode())]
        if requirements is not None:
            sent.append(("requirements", "requirements.txt", requirements.encode()))
        for path, content in (files or {}).items():
            sent.append(("support_files", path, content if isinstance(content, bytes) else content.encode()))
        body, content_type = multipart({} if runtime is None else {"runtime": runtime}, sent)
        response = api.generic("POST", "/api/v1/pipelines/", body, content_type)
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


@pytest.fixture
def multipart_body():
    """``multipart(fields, files)``: a body whose file names keep their folders (see above)."""
    return multipart


@pytest.fixture
def viewers(django_user_model, admin_user):
    """Who may see a run, each way: an admin; alice (the owner of her runs); bob, in group "team";
    carol (the owner of the runs shared with the others)."""
    from django.contrib.auth.models import Group

    team = Group.objects.create(name="team")
    alice = django_user_model.objects.create_user(username="alice", password="alice-password-1")
    bob = django_user_model.objects.create_user(username="bob", password="bob-password-1")
    carol = django_user_model.objects.create_user(username="carol", password="carol-password-1")
    bob.groups.add(team)
    return {"admin": admin_user, "alice": alice, "bob": bob, "carol": carol, "team": team}
