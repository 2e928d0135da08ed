"""API tokens: hashed at rest, named, shown once, listed without their value, revoked, rotated and
expired with a 401 that says so; each user acts on their own only."""

from __future__ import annotations

import base64
import hashlib
import importlib
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from mlopen.core import tokens
from mlopen.core.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-password-1")


@pytest.fixture
def mallory(django_user_model):
    return django_user_model.objects.create_user(username="mallory", password="mallory-password-1")


def _with(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def test_a_created_token_is_shown_once_and_stored_only_as_its_digest(alice):
    _, first = tokens.create_token(alice, "laptop")
    client = _with(first)

    created = client.post("/api/v1/me/tokens/", {"name": "ci", "expires_in_days": 30}, format="json")

    assert created.status_code == 201, created.content
    body = created.json()
    raw = body["token"]
    assert raw.startswith("mlo_") and len(raw) == 44 and body["prefix"] == raw[:12]
    assert body["state"] == "active" and body["current"] is False
    row = ApiToken.objects.get(pk=body["id"])
    assert row.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {str(value) for value in ApiToken.objects.filter(pk=row.pk).values().first().values()}
    assert timedelta(days=29, hours=23) < row.expires_at - timezone.now() <= timedelta(days=30)
    listed = client.get("/api/v1/me/tokens/").json()["results"]
    assert [(t["name"], t["current"]) for t in listed] == [("ci", False), ("laptop", True)]
    assert all("token" not in t and "digest" not in t for t in listed)
    assert _with(raw).get("/api/v1/me/").json()["username"] == "alice"


def test_a_revoked_token_is_a_401_that_says_so(alice):
    token, raw = tokens.create_token(alice, "laptop")
    client = _with(raw)

    assert client.delete(f"/api/v1/me/tokens/{token.pk}/").status_code == 204

    refused = client.get("/api/v1/me/")
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"] and "revoked by its owner" in refused.json()["detail"]
    assert ApiToken.objects.get(pk=token.pk).state == "revoked"


def test_an_expired_token_is_a_401_that_says_so(alice):
    token, raw = tokens.create_token(alice, "old")
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    refused = _with(raw).get("/api/v1/me/")

    assert refused.status_code == 401
    assert "expired" in refused.json()["detail"]


def test_an_unknown_token_is_a_401(alice):
    assert _with("mlo_" + "x" * 40).get("/api/v1/me/").status_code == 401


def test_rotating_replaces_the_token_with_one_of_the_same_name_and_lifetime(alice):
    token, raw = tokens.create_token(alice, "ci", expires_at=timezone.now() + timedelta(days=7))

    rotated = _with(raw).post(f"/api/v1/me/tokens/{token.pk}/rotate/")

    assert rotated.status_code == 201, rotated.content
    new = rotated.json()
    assert new["name"] == "ci" and new["id"] != token.pk
    assert _with(raw).get("/api/v1/me/").status_code == 401
    assert "rotated" in _with(raw).get("/api/v1/me/").json()["detail"]
    assert _with(new["token"]).get("/api/v1/me/").status_code == 200
    lifetime = ApiToken.objects.get(pk=new["id"]).expires_at - timezone.now()
    assert timedelta(days=6, hours=23) < lifetime <= timedelta(days=7)
    again = _with(new["token"]).post(f"/api/v1/me/tokens/{token.pk}/rotate/")
    assert again.status_code == 400 and "revoked" in again.json()["detail"]


def test_another_users_token_is_a_404_to_list_revoke_and_rotate(alice, mallory):
    token, raw = tokens.create_token(alice, "laptop")
    outsider = _with(tokens.create_token(mallory, "m")[1])

    assert outsider.get(f"/api/v1/me/tokens/{token.pk}/").status_code == 404
    assert outsider.delete(f"/api/v1/me/tokens/{token.pk}/").status_code == 404
    assert outsider.post(f"/api/v1/me/tokens/{token.pk}/rotate/").status_code == 404
    assert [t["name"] for t in outsider.get("/api/v1/me/tokens/").json()["results"]] == ["m"]
    assert _with(raw).get("/api/v1/me/").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": 99999999999999999999}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": "²"}, "expires_in_days"),
    ],
)
def test_a_bad_token_request_is_a_400_naming_the_field(alice, body, field):
    response = _with(tokens.create_token(alice, "t")[1]).post("/api/v1/me/tokens/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]


@pytest.mark.parametrize("pk", ["²", "99999999999999999999", "-1", "abc"])
def test_odd_token_ids_are_404s(alice, pk):
    response = _with(tokens.create_token(alice, "t")[1]).delete(f"/api/v1/me/tokens/{pk}/")
    assert response.status_code == 404


def test_a_token_can_be_had_with_username_and_password_for_mlopen_login(alice):
    client = APIClient()
    basic = base64.b64encode(b"alice:alice-password-1").decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {basic}")

    created = client.post("/api/v1/me/tokens/", {"name": "mlopen login"}, format="json")

    assert created.status_code == 201, created.content
    assert _with(created.json()["token"]).get("/api/v1/me/").json()["username"] == "alice"
    # Basic is for getting a token only: the rest of the API wants one.
    assert client.get("/api/v1/me/").status_code == 401


def test_a_user_may_hold_a_bounded_number_of_active_tokens(alice):
    for n in range(tokens.MAX_ACTIVE_TOKENS):
        tokens.create_token(alice, f"t{n}")
    with pytest.raises(tokens.TokenRequestInvalid, match="limit"):
        tokens.create_token(alice, "one more")


def test_plain_tokens_from_before_hashing_are_imported_and_keep_working(alice):
    migration = importlib.import_module("mlopen.core.migrations.0002_import_plain_tokens")
    key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp, user_id integer)")
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, %s)", [key, "2025-01-02 03:04:05", alice.pk])
    try:
        from django.apps import apps

        # The migration reads the connection only; a schema editor cannot open inside the test's transaction.
        migration.import_plain_tokens(apps, SimpleNamespace(connection=connection))
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM authtoken_token")
            assert cursor.fetchone() == (0,)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE authtoken_token")
    imported = ApiToken.objects.get(user=alice)
    assert imported.name == "token from before hashing" and imported.prefix == key[:12]
    assert imported.created_at.year == 2025
    assert _with(key).get("/api/v1/me/").json()["username"] == "alice"


def test_password_guesses_for_a_token_are_locked_out_like_the_login_page(alice, settings):
    settings.AXES_FAILURE_LIMIT = 3

    def attempt(password: str):
        client = APIClient(REMOTE_ADDR="1.2.3.4")
        client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"alice:{password}".encode()).decode())
        return client.post("/api/v1/me/tokens/", {"name": "guess"}, format="json")

    for _ in range(3):
        assert attempt("wrong").status_code == 401
    locked = attempt("alice-password-1")
    assert locked.status_code in (401, 403, 429)
    assert not ApiToken.objects.filter(name="guess").exists()
