"""Fair use over the API: a user's queued limit answers 429 with Retry-After and loses nothing, the
request-rate throttles answer 429 naming their limit, failed token authentications are capped per
client address, and /api/v1/me/ shows the user's runs against their limits."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import override_settings

from mlopen.runs.models import Run, RunLimits

pytestmark = pytest.mark.django_db

RATES = {
    "user_read": "3/minute",
    "anon_read": "2/minute",
    "user_write": "100/minute",
    "anon_write": "2/minute",
    "user_submit": "2/minute",
    "failed_auth": "3/minute",
}


@pytest.fixture(autouse=True)
def fresh_counts():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def alice_api(api_for, user):
    return api_for(user)


@pytest.fixture
def counter(make_pipeline):
    return make_pipeline(name="counter")


def submit(client, pipeline="counter"):
    return client.post("/api/v1/runs/", {"pipeline": pipeline}, format="json")


def test_past_the_queued_limit_a_run_is_refused_with_429_and_nothing_queued_is_lost(alice_api, user, counter):
    RunLimits.objects.create(user=user, max_queued=3)
    ids = [submit(alice_api).json()["id"] for _ in range(3)]
    refused = submit(alice_api)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"
    body = refused.json()
    assert body["retry_after"] == 60
    assert "3 runs waiting" in body["detail"] and "MLOPEN_USER_MAX_QUEUED" in body["detail"]
    assert body["errors"] == {"queued": "At most 3 runs may wait at once."}
    assert sorted(Run.objects.filter(owner=user, status="queued").values_list("pk", flat=True)) == sorted(ids)
    # Once one has left the queue, there is room again.
    Run.objects.filter(pk=ids[0]).update(status="cancelled")
    assert submit(alice_api).status_code == 201


def test_the_queued_limit_is_per_user_and_defaults_to_the_setting(alice_api, api, counter, settings):
    settings.MLOPEN_USER_MAX_QUEUED = 1
    assert submit(alice_api).status_code == 201
    assert submit(alice_api).status_code == 429
    assert submit(api).status_code == 201  # another user's queue is their own


def test_a_rerun_counts_against_the_queued_limit(alice_api, user, counter, settings):
    settings.MLOPEN_USER_MAX_QUEUED = 1
    first = submit(alice_api).json()["id"]
    refused = alice_api.post(f"/api/v1/runs/{first}/rerun/")
    assert refused.status_code == 429 and refused["Retry-After"] == "60"
    assert Run.objects.filter(owner=user).count() == 1


def test_me_shows_runs_running_and_queued_against_the_limits(alice_api, user, counter):
    RunLimits.objects.create(user=user, max_running=2, max_queued=0)
    submit(alice_api)
    submit(alice_api)
    Run.objects.filter(pk=Run.objects.filter(owner=user).first().pk).update(status="running")
    assert alice_api.get("/api/v1/me/").json()["runs"] == {
        "running": 1,
        "queued": 1,
        "max_running": 2,
        "max_queued": 0,
    }


@override_settings(MLOPEN_THROTTLE_RATES=RATES)
def test_reads_past_the_user_rate_get_429_with_retry_after_naming_the_limit(alice_api, api):
    for _ in range(3):
        assert alice_api.get("/api/v1/runs/").status_code == 200
    refused = alice_api.get("/api/v1/runs/")
    assert refused.status_code == 429
    wait = int(refused["Retry-After"])
    assert 1 <= wait <= 60
    assert refused.json() == {
        "detail": f"Too many requests: the limit is 3/minute reads (GET) (MLOPEN_THROTTLE_USER_READ). "
        f"Try again in {wait} s.",
        "errors": {},
        "retry_after": wait,
    }
    assert api.get("/api/v1/runs/").status_code == 200  # counted per user


@override_settings(MLOPEN_THROTTLE_RATES=RATES)
def test_run_submissions_have_their_own_rate(alice_api, counter):
    assert submit(alice_api).status_code == 201
    assert submit(alice_api).status_code == 201
    refused = submit(alice_api)
    assert refused.status_code == 429
    assert "MLOPEN_THROTTLE_USER_SUBMIT" in refused.json()["detail"]
    assert Run.objects.count() == 2


@override_settings(MLOPEN_THROTTLE_RATES=RATES)
def test_anonymous_requests_are_counted_per_client_address(client):
    # The schema is public (everything else answers 401 before any throttle counts).
    for _ in range(2):
        assert client.get("/api/schema/", REMOTE_ADDR="10.0.0.1").status_code == 200
    refused = client.get("/api/schema/", REMOTE_ADDR="10.0.0.1")
    assert refused.status_code == 429
    assert b"MLOPEN_THROTTLE_ANON_READ" in refused.content and refused["Retry-After"]
    assert client.get("/api/schema/", REMOTE_ADDR="10.0.0.2").status_code == 200


@override_settings(MLOPEN_THROTTLE_RATES=RATES)
def test_failed_token_authentications_are_capped_per_client_address(client):
    for _ in range(3):
        assert client.get("/api/v1/me/", HTTP_AUTHORIZATION="Token wrong", REMOTE_ADDR="10.0.0.9").status_code == 401
    refused = client.get("/api/v1/me/", HTTP_AUTHORIZATION="Token wrong", REMOTE_ADDR="10.0.0.9")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert "failed token authentications" in refused.json()["detail"]
    assert "MLOPEN_THROTTLE_FAILED_AUTH" in refused.json()["detail"]
    # Another address is not affected, and neither are requests without a token (a session).
    assert client.get("/api/v1/me/", HTTP_AUTHORIZATION="Token wrong", REMOTE_ADDR="10.0.0.8").status_code == 401
    assert client.get("/api/v1/me/", REMOTE_ADDR="10.0.0.9").status_code == 401
