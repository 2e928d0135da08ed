"""Webhooks through the API: created with a checked URL and a secret shown once; each user sees,
deletes and reads the delivery log of their own only."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://93.184.215.14/hooks/mlopen"  # a public address: no name to resolve


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password=None)


@pytest.fixture
def mallory(django_user_model):
    return django_user_model.objects.create_user(username="mallory", password=None)


def _create(client, expect=201, **body):
    response = client.post("/api/v1/webhooks/", {"events": ["run.succeeded"], **body}, format="json")
    assert response.status_code == expect, response.content
    return response.json()


def test_creating_a_webhook_shows_its_secret_once(api_for, alice):
    client = api_for(alice)

    created = _create(client, url=PUBLIC_URL, events=["run.failed", "run.succeeded"])

    assert len(created["secret"]) == 64
    assert created["events"] == ["run.succeeded", "run.failed"]
    assert created["active"] is True and created["failing"] is False
    detail = client.get(f"/api/v1/webhooks/{created['id']}/").json()
    assert "secret" not in detail
    assert detail["url"] == PUBLIC_URL
    listed = client.get("/api/v1/webhooks/").json()["results"]
    assert [hook["id"] for hook in listed] == [created["id"]]
    assert "secret" not in listed[0]


def test_a_webhook_may_be_limited_to_one_pipeline_by_name(api_for, admin_user):
    from mlopen.pipelines.models import Pipeline

    pipeline = Pipeline.objects.create(name="scores", description="", created_by=admin_user)

    created = _create(api_for(admin_user), url=PUBLIC_URL, pipeline="scores")

    assert created["pipeline"] == pipeline.pk
    assert created["pipeline_name"] == "scores"


def test_another_users_webhook_is_not_found_and_not_listed(api_for, alice, mallory):
    created = _create(api_for(alice), url=PUBLIC_URL)
    other = api_for(mallory)

    assert other.get(f"/api/v1/webhooks/{created['id']}/").status_code == 404
    assert other.get(f"/api/v1/webhooks/{created['id']}/deliveries/").status_code == 404
    assert other.delete(f"/api/v1/webhooks/{created['id']}/").status_code == 404
    assert other.get("/api/v1/webhooks/").json()["results"] == []
    assert api_for(alice).get(f"/api/v1/webhooks/{created['id']}/").status_code == 200


def test_the_owner_deletes_a_webhook(api_for, alice):
    client = api_for(alice)
    created = _create(client, url=PUBLIC_URL)

    assert client.delete(f"/api/v1/webhooks/{created['id']}/").status_code == 204
    assert client.get(f"/api/v1/webhooks/{created['id']}/").status_code == 404


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://93.184.215.14/hook", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("https://93.184.215.14/" + "a" * 2100, "2048"),
        ("http://127.0.0.1:8000/api/v1/", "loopback"),
        ("http://localhost/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "loopback, link-local"),
        ("http://10.1.2.3/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://0.0.0.0/", "reserved"),
        ("http://user:pw@93.184.215.14/", "user name or password"),
        ("https://nowhere.invalid/", "does not resolve"),
    ],
)
def test_a_url_webhooks_may_not_call_is_refused_with_a_reason(api_for, alice, url, reason):
    response = api_for(alice).post("/api/v1/webhooks/", {"url": url, "events": ["run.succeeded"]}, format="json")

    assert response.status_code == 400, response.content
    assert reason in str(response.json()), response.json()
    assert "url" in response.json()["errors"]


@pytest.mark.parametrize(
    "body",
    [
        {"url": PUBLIC_URL, "events": []},
        {"url": PUBLIC_URL, "events": ["run.exploded"]},
        {"url": PUBLIC_URL},
        {"events": ["run.succeeded"]},
        {"url": PUBLIC_URL, "events": ["run.succeeded"], "pipeline": "no-such-pipeline"},
    ],
)
def test_a_webhook_without_known_events_url_or_pipeline_is_refused(api_for, alice, body):
    response = api_for(alice).post("/api/v1/webhooks/", body, format="json")

    assert response.status_code == 400, response.content


def test_private_addresses_are_allowed_when_the_admin_says_so(api_for, alice, settings):
    settings.MLOPEN_WEBHOOK_ALLOW_PRIVATE = True

    created = _create(api_for(alice), url="http://127.0.0.1:9/hook")

    assert created["url"] == "http://127.0.0.1:9/hook"


def test_the_delivery_log_lists_the_latest_calls_newest_first(api_for, alice):
    from mlopen.notifications.models import Webhook, WebhookDelivery

    client = api_for(alice)
    created = _create(client, url=PUBLIC_URL)
    webhook = Webhook.objects.get(pk=created["id"])
    WebhookDelivery.objects.create(webhook=webhook, event="run.succeeded", state="failed", error="500")
    WebhookDelivery.objects.create(webhook=webhook, event="run.failed", state="delivered", status_code=204)

    log = client.get(f"/api/v1/webhooks/{created['id']}/deliveries/").json()["results"]

    assert [(d["event"], d["state"]) for d in log] == [("run.failed", "delivered"), ("run.succeeded", "failed")]
