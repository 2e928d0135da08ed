"""One webhook call, made in this process against a receiver on 127.0.0.1: signed, retried on a
5xx, given up after the last try (the webhook marked failing), never sent to a forbidden address."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from webhook_receiver import start_receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    started = []

    def start(statuses=None):
        started.append(start_receiver(statuses))
        return started[-1]

    yield start
    for server in started:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture
def finished_run(admin_user):
    from django.utils import timezone

    from mlopen.pipelines.models import Pipeline, PipelineVersion
    from mlopen.runs.models import Run

    pipeline = Pipeline.objects.create(name="scores", description="", created_by=admin_user)
    version = PipelineVersion.objects.create(
        pipeline=pipeline, number=1, control_filename="scores.py", folder="pipelines/x/v1"
    )
    return Run.objects.create(
        pipeline=pipeline, version=version, kind="run", owner=admin_user, status="succeeded", finished_at=timezone.now()
    )


def _webhook(owner, url, events=("run.succeeded",), pipeline=None):
    from mlopen.notifications.models import Webhook

    return Webhook.objects.create(owner=owner, url=url, events=list(events), pipeline=pipeline, secret="s3cret")


def _delivery(webhook, run):
    from mlopen.notifications.models import WebhookDelivery

    return WebhookDelivery.objects.create(webhook=webhook, event=f"run.{run.status}", run=run)


def test_a_delivery_is_a_signed_json_post_of_the_run(settings, receiver, finished_run):
    from mlopen.notifications import delivery

    settings.MLOPEN_WEBHOOK_ALLOW_PRIVATE = True
    server = receiver()
    sent = _delivery(_webhook(finished_run.owner, server.url), finished_run)

    outcome = delivery.deliver(sent.pk, last_try=False)

    assert outcome.retry is False
    (call,) = server.wait_for(1)
    expected = "sha256=" + hmac.new(b"s3cret", call.body, hashlib.sha256).hexdigest()
    assert call.headers["X-Mlopen-Signature"] == expected
    assert call.headers["X-Mlopen-Event"] == "run.succeeded"
    body = json.loads(call.body)
    assert body["event"] == "run.succeeded"
    assert body["run"]["id"] == finished_run.pk
    assert body["run"]["status"] == "succeeded"
    assert body["run"]["pipeline"]["name"] == finished_run.pipeline.name
    assert body["run"]["url"] == f"/api/v1/runs/{finished_run.pk}/"
    sent.refresh_from_db()
    assert (sent.state, sent.status_code, sent.attempts) == ("delivered", 200, 1)
    assert sent.delivered_at is not None


def test_a_5xx_is_tried_again_and_the_last_failure_marks_the_webhook_failing(settings, receiver, finished_run):
    from mlopen.notifications import delivery

    settings.MLOPEN_WEBHOOK_ALLOW_PRIVATE = True
    server = receiver([500, 503])
    webhook = _webhook(finished_run.owner, server.url)
    sent = _delivery(webhook, finished_run)

    assert delivery.deliver(sent.pk, last_try=False).retry is True
    sent.refresh_from_db()
    assert (sent.state, sent.status_code, sent.attempts) == ("pending", 500, 1)
    assert delivery.deliver(sent.pk, last_try=True).retry is False

    sent.refresh_from_db()
    webhook.refresh_from_db()
    assert (sent.state, sent.status_code, sent.attempts) == ("failed", 503, 2)
    assert "503" in sent.error
    assert webhook.failing is True


def test_a_receiver_that_refuses_is_not_tried_again(settings, receiver, finished_run):
    from mlopen.notifications import delivery

    settings.MLOPEN_WEBHOOK_ALLOW_PRIVATE = True
    server = receiver([404])
    sent = _delivery(_webhook(finished_run.owner, server.url), finished_run)

    assert delivery.deliver(sent.pk, last_try=False).retry is False
    sent.refresh_from_db()
    assert (sent.state, sent.status_code) == ("failed", 404)


def test_a_receiver_that_cannot_be_reached_is_tried_again(settings, finished_run):
    from mlopen.notifications import delivery

    settings.MLOPEN_WEBHOOK_ALLOW_PRIVATE = True
    sent = _delivery(_webhook(finished_run.owner, "http://127.0.0.1:9/hook"), finished_run)

    assert delivery.deliver(sent.pk, last_try=False).retry is True
    sent.refresh_from_db()
    assert sent.state == "pending" and "connect" in sent.error.lower()


def test_a_url_that_now_resolves_to_a_private_address_is_not_called(settings, receiver, finished_run):
    """Allowed when created, forbidden at delivery (DNS rebinding, or the setting changed)."""
    from mlopen.notifications import delivery

    server = receiver()
    webhook = _webhook(finished_run.owner, server.url)
    sent = _delivery(webhook, finished_run)
    settings.MLOPEN_WEBHOOK_ALLOW_PRIVATE = False

    assert delivery.deliver(sent.pk, last_try=False).retry is False

    sent.refresh_from_db()
    assert sent.state == "failed" and "loopback" in sent.error
    assert server.calls == []


def test_a_finished_run_queues_a_delivery_for_each_webhook_that_wants_it(finished_run, django_user_model):
    from mlopen.notifications import services
    from mlopen.pipelines.models import Pipeline

    owner = finished_run.owner
    other_pipeline = Pipeline.objects.create(name="other", description="")
    wanted = _webhook(owner, "https://93.184.215.14/a")
    also_wanted = _webhook(owner, "https://93.184.215.14/b", pipeline=finished_run.pipeline)
    _webhook(owner, "https://93.184.215.14/c", events=["run.failed"])
    _webhook(owner, "https://93.184.215.14/d", pipeline=other_pipeline)
    _webhook(django_user_model.objects.create_user(username="someone"), "https://93.184.215.14/e")

    sent = services.dispatch_finished(finished_run.pk)

    from mlopen.notifications.models import WebhookDelivery

    assert {d.webhook_id for d in WebhookDelivery.objects.filter(pk__in=sent)} == {wanted.pk, also_wanted.pk}


def test_the_delivery_log_keeps_the_latest_fifty(finished_run):
    from mlopen.notifications import services
    from mlopen.notifications.models import WebhookDelivery

    webhook = _webhook(finished_run.owner, "https://93.184.215.14/a")
    for _ in range(55):
        services.dispatch_finished(finished_run.pk)

    assert WebhookDelivery.objects.filter(webhook=webhook).count() == 50
