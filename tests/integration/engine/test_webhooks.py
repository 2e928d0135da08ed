"""Webhooks with a real worker: a run that ends calls its owner's webhook, signed, from the worker,
after the run finished; a receiver that answers 500 is called again, and the log says so."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from webhook_receiver import start_receiver

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

# The receiver listens on 127.0.0.1, which webhooks may only call when the admin allows it.
WORKER_ENV = {"MLOPEN_WEBHOOK_ALLOW_PRIVATE": "true"}

QUICK = """
    def train(inpt, params=None):
        pass
    def run_pipeline(input, model, args, params=None):
        return {"columns": ["n"], "data": [[1]]}
    """


@pytest.fixture
def receiver(settings):
    settings.MLOPEN_WEBHOOK_ALLOW_PRIVATE = True
    started = []

    def start(statuses=None):
        started.append(start_receiver(statuses))
        return started[-1]

    yield start
    for server in started:
        server.server.shutdown()
        server.server.server_close()


def _add_webhook(api, url, events=("run.succeeded",)):
    response = api.post("/api/v1/webhooks/", {"url": url, "events": list(events)}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _deliveries(api, webhook_id, until, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        log = api.get(f"/api/v1/webhooks/{webhook_id}/deliveries/").json()["results"]
        if until(log) or time.monotonic() > deadline:
            return log
        time.sleep(0.2)


def test_a_run_that_succeeds_calls_the_webhook_with_a_signed_body(
    api, pipeline_from, submit, receiver, module_worker, wait_for_run
):
    server = receiver()
    webhook = _add_webhook(api, server.url)
    pipeline_from("quick", QUICK)

    run = submit("quick")
    wait_for_run(run["id"])

    (call,) = server.wait_for(1)
    signature = "sha256=" + hmac.new(webhook["secret"].encode(), call.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(call.headers["X-Mlopen-Signature"], signature)
    body = json.loads(call.body)
    assert body["event"] == "run.succeeded"
    assert body["run"]["id"] == run["id"]
    assert body["run"]["status"] == "succeeded"
    assert body["run"]["pipeline"]["name"] == "quick"
    log = _deliveries(api, webhook["id"], lambda log: log and log[0]["state"] == "delivered")
    assert [(d["event"], d["state"], d["status_code"], d["attempts"]) for d in log] == [
        ("run.succeeded", "delivered", 200, 1)
    ]


def test_a_receiver_answering_500_is_called_again_and_the_log_shows_it(
    api, pipeline_from, submit, receiver, module_worker, wait_for_run
):
    server = receiver([500])
    webhook = _add_webhook(api, server.url)
    pipeline_from("quick", QUICK)

    run = submit("quick")
    wait_for_run(run["id"])

    first, second = server.wait_for(2)
    assert first.body == second.body
    log = _deliveries(api, webhook["id"], lambda log: log and log[0]["state"] == "delivered")
    assert [(d["state"], d["status_code"], d["attempts"]) for d in log] == [("delivered", 200, 2)]


def test_a_webhook_for_failures_only_is_not_called_for_a_success(
    api, pipeline_from, submit, receiver, module_worker, wait_for_run
):
    server = receiver()
    successes = _add_webhook(api, server.url, events=["run.succeeded"])
    failures = _add_webhook(api, server.url + "?failures", events=["run.failed"])
    pipeline_from("quick", QUICK)

    wait_for_run(submit("quick")["id"])

    (call,) = server.wait_for(1)
    assert call.path == "/hook"
    assert _deliveries(api, successes["id"], bool)
    # Both deliveries would have been logged when the run finished, before either call.
    assert api.get(f"/api/v1/webhooks/{failures['id']}/deliveries/").json()["results"] == []
