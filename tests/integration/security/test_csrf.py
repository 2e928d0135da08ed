"""Cross-site request forgery: every state-changing route refuses a browser session without the token.

The routes come from the persona walk's table, which covers every route of the URL conf. API
calls with a token are not exposed to CSRF (a browser never sends the token by itself); API calls
riding on the session cookie are checked by DRF like the pages.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from test_persona_walk import CASES

from mlopen.datasets.models import Dataset
from mlopen.runs.models import Run

pytestmark = pytest.mark.django_db

UNSAFE = [case for case in CASES if case.method in ("post", "put", "patch", "delete") and case.route != "not_found"]


def _state(world) -> dict:
    return {
        "runs": Run.objects.count(),
        "datasets": Dataset.objects.count(),
        "queued": Run.objects.get(pk=world.queued.pk).status,
        "queued_api": Run.objects.get(pk=world.queued_api.pk).status,
        "shared": [(o.shared_with_all, list(o.shared_groups.all())) for o in (world.run, world.dataset)],
        "pipeline_group": type(world.pipeline).objects.get(pk=world.pipeline.pk).private_group_id,
    }


def test_the_table_has_every_kind_of_state_changing_route():
    routes = {case.route for case in UNSAFE}
    assert {
        "web:run-cancel",
        "web:dataset-delete",
        "web:run-share",
        "run-cancel",
        "dataset-detail",
        "dataset-share",
        "logout",
    } <= routes


def test_every_state_changing_route_refuses_a_session_without_a_csrf_token(world, web_as):
    before = _state(world)
    problems = []
    for case in UNSAFE:
        client = web_as(world.alice, enforce_csrf_checks=True)
        client.get("/")  # a real browser has the CSRF cookie, just not the form's token
        url = case.url(world)
        data = case.data(world) if callable(case.data) else case.data
        if case.route.startswith("web:") or case.route in ("logout",):
            response = getattr(client, case.method)(url, data or {})
        else:
            response = getattr(client, case.method)(url, json.dumps(data or {}), content_type="application/json")
        body = response.content.decode(errors="replace")
        if response.status_code != 403 or "CSRF" not in body:
            problems.append(f"{case.method.upper()} {case.route}: {response.status_code} {body[:120]!r}")
    assert problems == []
    assert _state(world) == before


def test_the_login_form_itself_needs_the_token(client, world):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/accounts/login/", {"username": "alice", "password": "x"})
    assert response.status_code == 403


def test_the_same_request_with_the_token_goes_through(world, web_as):
    client = web_as(world.alice, enforce_csrf_checks=True)
    client.get("/")
    token = client.cookies["csrftoken"].value
    response = client.post(reverse("web:run-cancel", args=[world.queued.pk]), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert Run.objects.get(pk=world.queued.pk).status == "cancelled"


def test_api_calls_with_a_token_need_no_csrf_token(world, api_as):
    response = api_as(world.alice).post(f"/api/v1/runs/{world.queued_api.pk}/cancel/")
    assert response.status_code == 200
