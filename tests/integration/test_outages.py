"""core.outages: a lost database answers 503 (the API's JSON, or a plain page), never Django's HTML 500.

A bug in a query (IntegrityError, DataError) stays a 500: only a connection that is lost or
refused is the database being unavailable.
"""

from __future__ import annotations

import html
import time

import httpx
import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, InterfaceError, OperationalError, connection
from django.test import Client

from mlopen.api import views as api_views
from mlopen.core import outages
from mlopen.core.tokens import create_token
from mlopen.web.views import datasets as dataset_pages

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def raising(exc: Exception):
    def fail(*args, **kwargs):
        raise exc

    return fail


def test_an_api_get_whose_query_loses_the_database_answers_a_json_503_with_retry_after(api, monkeypatch):
    monkeypatch.setattr(
        api_views.DatasetViewSet, "get_queryset", raising(OperationalError("server closed the connection"))
    )

    response = api.get("/api/v1/datasets/")

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": outages.DATABASE_UNAVAILABLE, "errors": {}}
    assert response["Retry-After"] == str(outages.RETRY_AFTER_SECONDS)


def test_an_api_post_whose_write_loses_the_database_answers_a_json_503(api, monkeypatch):
    monkeypatch.setattr(
        api_views.dataset_services, "store_dataset", raising(InterfaceError("connection already closed"))
    )

    response = api.post("/api/v1/datasets/", {"file": SimpleUploadedFile("a.csv", b"x\n1\n")}, format="multipart")

    assert response.status_code == 503
    assert response.json()["detail"] == outages.DATABASE_UNAVAILABLE
    assert response["Retry-After"] == str(outages.RETRY_AFTER_SECONDS)


def test_a_page_whose_query_loses_the_database_answers_a_plain_503_page(client, user, monkeypatch):
    client.force_login(user)
    monkeypatch.setattr(dataset_pages, "_visible", raising(OperationalError("terminating connection")))

    response = client.get("/datasets/")

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == str(outages.RETRY_AFTER_SECONDS)
    page = html.unescape(response.content.decode())
    assert "mlopen is unavailable for a moment" in page
    assert outages.DATABASE_UNAVAILABLE in page


def test_a_page_whose_session_cannot_be_read_before_the_view_answers_a_plain_503_page(user, monkeypatch):
    client = Client(raise_request_exception=False)  # failing in middleware: handler500's to answer
    client.force_login(user)
    monkeypatch.setattr(SessionStore, "load", raising(OperationalError("could not connect to server")))

    response = client.get("/datasets/")

    assert response.status_code == 503
    assert outages.DATABASE_UNAVAILABLE in html.unescape(response.content.decode())


def test_an_integrity_error_is_a_bug_and_stays_a_500(api, monkeypatch):
    monkeypatch.setattr(api_views.DatasetViewSet, "get_queryset", raising(IntegrityError("duplicate key")))
    api.raise_request_exception = False

    response = api.get("/api/v1/datasets/")

    assert response.status_code == 500


@pytest.mark.skipif(connection.vendor != "postgresql", reason="pg_terminate_backend is PostgreSQL's")
def test_on_postgresql_an_api_get_after_its_connection_was_cut_reconnects_and_answers_200(live_server, admin_user):
    # A real server thread keeps its connection between requests (CONN_MAX_AGE); it is cut as a
    # database restart would cut it, and the next request must get a fresh one (CONN_HEALTH_CHECKS).
    token = create_token(admin_user, "outage test")[1]
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Token {token}"}) as web:
        assert web.get("/api/v1/datasets/").status_code == 200
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            cut = [pid for pid, terminated in cursor.fetchall() if terminated]
            assert cut
            # As after a restart: the ended sessions are gone (and have said so) before the next request.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [cut])
                if cursor.fetchone()[0] == 0:
                    break
                time.sleep(0.01)

        response = web.get("/api/v1/datasets/")

    assert response.status_code == 200, response.text
    assert response.json()["count"] == 0
