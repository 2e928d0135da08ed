"""Fixtures for the engine tests: real `mlopen worker` processes executing real child processes.

Every engine test is transactional (a worker only sees committed rows). Pipelines are written
inline as source so each test reads as one story: the pipeline, the request, what came of it.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Each test creates its admin afresh (tables are emptied between tests); the default hasher
    # would spend half a second on each password.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
