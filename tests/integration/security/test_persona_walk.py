"""Every route, as the owner of the objects, as another user, and as an anonymous visitor.

Another user's object is a 404 on every page and API route (detail, download, logs, results,
cancel, re-run, delete, share), with the same body as for an object that does not exist; nothing
of the owner's ever appears in what another user is sent; anonymous visitors are sent to the
login page (pages) or answered 401 (API). Every response says nosniff, every page carries a CSP,
every download is an attachment.

The expectations are one table; a route of the URL conf missing from it fails the walk, so a new
route cannot be added without saying what each persona gets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.urls import reverse
from security_fixtures import SECRET
from security_routes import all_routes

pytestmark = pytest.mark.django_db

LOGIN = "login"  # a redirect to the login page


@dataclass
class Case:
    route: str  # the route's key: "web:run-detail", "run-detail", "healthz", "not_found"
    method: str
    url: Callable  # world -> URL
    owner: int | set  # what alice gets
    other: int | set  # what mallory gets
    anonymous: int | set | str | None = None  # None: LOGIN for pages, 401 for the API
    data: dict | Callable | None = None
    download: bool = False
    fresh_client: bool = False  # the request logs the client out


def web(name, **kwargs):
    return lambda w: reverse(f"web:{name}", kwargs={k: v(w) for k, v in kwargs.items()})


def api(name, **kwargs):
    return lambda w: reverse(name, kwargs={k: v(w) for k, v in kwargs.items()})


DATASET = {"pk": lambda w: w.dataset.pk}
RUN = {"pk": lambda w: w.run.pk}
PIPELINE = {"pk": lambda w: w.pipeline.pk}
QUEUED = {"pk": lambda w: w.queued.pk}
WEBHOOK = {"pk": lambda w: w.webhook.pk}
MODEL = {"pk": lambda w: w.pipeline.pk, "model_id": lambda w: w.model.pk}


def token(use):
    return {"pk": lambda w: w.tokens[use].pk}


CASES = [
    # --- public ---------------------------------------------------------------------------------
    Case("healthz", "get", lambda w: "/healthz", {200, 503}, {200, 503}, {200, 503}),
    Case("login", "get", lambda w: "/accounts/login/", 200, 200, 200),
    Case("logout", "post", lambda w: "/accounts/logout/", 302, 302, fresh_client=True),
    Case("password_change", "get", lambda w: "/accounts/password_change/", 200, 200),
    Case("password_change_done", "get", lambda w: "/accounts/password_change/done/", 200, 200),
    Case("api-schema", "get", lambda w: "/api/schema/", 200, 200, 200),
    Case("api-docs", "get", lambda w: "/api/docs/", 200, 200, 200),
    Case("api-redoc", "get", lambda w: "/api/redoc/", 200, 200, 200),
    Case("not_found", "get", lambda w: "/api/v1/nothing-here/", 404, 404, 404),
    # --- pages ----------------------------------------------------------------------------------
    Case("web:home", "get", web("home"), 200, 200),
    Case("web:pipeline-list", "get", web("pipeline-list"), 200, 200),
    Case("web:pipeline-upload", "get", web("pipeline-upload"), 200, 200),
    Case("web:pipeline-detail", "get", web("pipeline-detail", **PIPELINE), 200, 404),
    Case("web:pipeline-detail", "post", web("pipeline-detail", **PIPELINE), 302, 404, data={"maintainers": ""}),
    Case(
        "web:pipeline-visibility",
        "post",
        web("pipeline-visibility", **PIPELINE),
        302,
        404,
        data=lambda w: {"group": w.team.pk},
    ),
    Case(
        "web:pipeline-first-run",
        "post",
        web("pipeline-first-run", **PIPELINE),
        302,
        404,
        data={"input_required": "on"},
    ),
    Case("web:pipeline-files", "get", web("pipeline-files", number=lambda w: 1, **PIPELINE), 200, 404),
    Case(
        "web:pipeline-file",
        "get",
        web("pipeline-file", number=lambda w: 1, path=lambda w: w.pipeline.latest_version.control_filename, **PIPELINE),
        200,
        404,
    ),
    Case(
        "web:pipeline-file-download",
        "get",
        web(
            "pipeline-file-download",
            number=lambda w: 1,
            path=lambda w: w.pipeline.latest_version.control_filename,
            **PIPELINE,
        ),
        200,
        404,
        download=True,
    ),
    Case("web:pipeline-compare", "get", web("pipeline-compare", **PIPELINE), 200, 404),
    Case("web:model-detail", "get", web("model-detail", **MODEL), 200, 404),
    Case("web:model-alias", "post", web("model-alias", **MODEL), 302, 404, data={"name": "production"}),
    Case("web:dataset-list", "get", web("dataset-list"), 200, 200),
    Case("web:dataset-upload", "get", web("dataset-upload"), 200, 200),
    Case("web:dataset-detail", "get", web("dataset-detail", **DATASET), 200, 404),
    Case("web:dataset-delete", "get", web("dataset-delete", **DATASET), 200, 404),
    Case("web:dataset-delete", "post", web("dataset-delete", pk=lambda w: w.dataset_to_delete.pk), 302, 404),
    Case("web:dataset-share", "post", web("dataset-share", **DATASET), 302, 404, data={"action": "private"}),
    Case("web:run-list", "get", web("run-list"), 200, 200),
    Case("web:run-list-live", "get", web("run-list-live"), 200, 200),
    Case("web:home-live", "get", web("home-live"), 200, 200),
    Case("web:pipeline-runs-live", "get", web("pipeline-runs-live", **PIPELINE), 200, 404),
    Case("web:notification-preferences", "get", web("notification-preferences"), 200, 200),
    Case(
        "web:notification-preferences",
        "post",
        web("notification-preferences"),
        302,
        302,
        data={"email": "failures", "browser": "all"},
    ),
    Case("web:storage", "get", web("storage"), 403, 403),
    Case("web:storage", "post", web("storage"), 403, 403, data={"action": "remove-orphans"}),
    Case(
        "web:run-new",
        "get",
        lambda w: reverse("web:run-new") + f"?pipeline={w.pipeline.pk}&input={w.dataset.pk}",
        200,
        200,
    ),
    # Starting a run with someone else's dataset (or pipeline) is refused.
    Case(
        "web:run-new",
        "post",
        web("run-new"),
        302,
        400,
        data=lambda w: {"pipeline": w.pipeline.pk, "kind": "run", "input": w.dataset.pk},
    ),
    Case("web:run-new-params", "get", lambda w: reverse("web:run-new-params") + f"?pipeline={w.pipeline.pk}", 200, 200),
    # The train -> run check of another user's pipeline and dataset: nothing to say, nothing shown.
    Case(
        "web:run-new-check",
        "get",
        lambda w: reverse("web:run-new-check") + f"?pipeline={w.pipeline.pk}&input={w.dataset.pk}&kind=run",
        200,
        200,
    ),
    Case("web:run-detail", "get", web("run-detail", **RUN), 200, 404),
    Case("web:run-status", "get", web("run-status", **RUN), 200, 404),
    Case("web:run-table", "get", web("run-table", **RUN), 200, 404),
    Case("web:run-graph", "get", web("run-graph", index=lambda w: 1, **RUN), 200, 404),
    Case("web:run-cancel", "post", web("run-cancel", **QUEUED), 302, 404),
    Case("web:run-rerun", "post", web("run-rerun", **RUN), 302, 404),
    Case("web:run-share", "post", web("run-share", **RUN), 302, 404, data={"action": "private"}),
    Case("web:run-labels", "get", web("run-labels", **RUN), 200, 404),
    Case("web:run-labels-edit", "get", web("run-labels-edit", **RUN), 200, 404),
    Case("web:run-labels-edit", "post", web("run-labels-edit", **RUN), 302, 404, data={"name": "renamed"}),
    Case("web:run-compare", "get", lambda w: reverse("web:run-compare") + f"?ids={w.run.pk},{w.queued.pk}", 200, 404),
    Case(
        "web:runs-delete",
        "post",
        web("runs-delete"),
        302,
        404,
        data=lambda w: {"ids": w.run_to_delete.pk, "confirm": "yes"},
    ),
    Case("web:webhook-list", "get", web("webhook-list"), 200, 200),
    Case("web:account", "get", web("account"), 200, 200),
    Case("web:account-token-create", "post", web("account-token-create"), 200, 200, data={"name": "walk"}),
    Case("web:account-token-rotate", "post", web("account-token-rotate", **token("web-rotate")), 200, 404),
    Case("web:account-token-revoke", "post", web("account-token-revoke", **token("web-revoke")), 200, 404),
    Case("web:account-password", "post", web("account-password"), 400, 400, data={"old_password": "x"}),
    # --- API ------------------------------------------------------------------------------------
    Case("api-root", "get", lambda w: "/api/v1/", 200, 200),
    Case("api-me", "get", api("api-me"), 200, 200),
    Case("pipeline-list", "get", api("pipeline-list"), 200, 200),
    Case("pipeline-list", "post", api("pipeline-list"), 400, 400, data={}),
    Case("pipeline-detail", "get", api("pipeline-detail", **PIPELINE), 200, 404),
    Case("pipeline-detail", "patch", api("pipeline-detail", **PIPELINE), 200, 404, data={"maintainers": []}),
    Case("pipeline-trained-models", "get", api("pipeline-trained-models", **PIPELINE), 200, 404),
    Case("pipeline-model-detail", "get", api("pipeline-model-detail", **MODEL), 200, 404),
    Case(
        "pipeline-model-detail", "patch", api("pipeline-model-detail", **MODEL), 200, 404, data={"aliases": ["staging"]}
    ),
    Case("pipeline-model-runs", "get", api("pipeline-model-runs", **MODEL), 200, 404),
    Case("pipeline-model-download", "get", api("pipeline-model-download", **MODEL), 200, 404, download=True),
    Case("pipeline-versions", "get", api("pipeline-versions", **PIPELINE), 200, 404),
    Case("pipeline-versions", "post", api("pipeline-versions", **PIPELINE), 400, 404, data={}),
    Case("pipeline-version-files", "get", api("pipeline-version-files", number=lambda w: 1, **PIPELINE), 200, 404),
    Case(
        "pipeline-version-file",
        "get",
        api(
            "pipeline-version-file",
            number=lambda w: 1,
            path=lambda w: w.pipeline.latest_version.control_filename,
            **PIPELINE,
        ),
        200,
        404,
        download=True,
    ),
    Case("dataset-list", "get", api("dataset-list"), 200, 200),
    Case("dataset-list", "post", api("dataset-list"), 400, 400, data={}),
    Case("dataset-detail", "get", api("dataset-detail", **DATASET), 200, 404),
    Case("dataset-detail", "delete", api("dataset-detail", pk=lambda w: w.dataset_to_delete_api.pk), 204, 404),
    Case("dataset-download", "get", api("dataset-download", **DATASET), 200, 404, download=True),
    Case("dataset-preview", "get", api("dataset-preview", **DATASET), 200, 404),
    Case("dataset-stats", "get", api("dataset-stats", **DATASET), 200, 404),
    Case("dataset-share", "get", api("dataset-share", **DATASET), 200, 404),
    Case("dataset-share", "post", api("dataset-share", **DATASET), 200, 404, data={"everyone": False}),
    Case("dataset-share", "patch", api("dataset-share", **DATASET), 200, 404, data={"groups": []}),
    Case("run-list", "get", api("run-list"), 200, 200),
    Case(
        "run-list", "post", api("run-list"), 201, 400, data=lambda w: {"pipeline": w.pipeline.pk, "input": w.dataset.pk}
    ),
    Case("run-detail", "get", api("run-detail", **RUN), 200, 404),
    Case("run-logs", "get", api("run-logs", **RUN), 200, 404),
    Case("run-result", "get", api("run-result", **RUN), 200, 404),
    Case("run-download", "get", api("run-download", **RUN), 200, 404, download=True),
    Case("run-image", "get", api("run-image", index=lambda w: 0, **RUN), 200, 404, download=True),
    Case("run-requirements", "get", api("run-requirements", **RUN), 200, 404, download=True),
    Case("run-cancel", "post", api("run-cancel", pk=lambda w: w.queued_api.pk), 200, 404),
    Case("run-rerun", "post", api("run-rerun", **RUN), 201, 404),
    Case("run-share", "get", api("run-share", **RUN), 200, 404),
    Case("run-share", "post", api("run-share", **RUN), 200, 404, data={"everyone": False}),
    Case("run-share", "patch", api("run-share", **RUN), 200, 404, data={"groups": []}),
    Case("run-detail", "patch", api("run-detail", **RUN), 200, 404, data={"name": "renamed", "tags": ["t"]}),
    Case("run-detail", "delete", api("run-detail", pk=lambda w: w.run_to_delete_api.pk), 204, 404),
    Case(
        "run-bulk-delete",
        "post",
        api("run-bulk-delete"),
        200,
        404,
        data=lambda w: {"ids": [w.run_to_bulk_delete.pk]},
    ),
    Case("run-compare", "get", lambda w: reverse("run-compare") + f"?ids={w.run.pk},{w.queued.pk}", 200, 404),
    Case("webhook-list", "get", api("webhook-list"), 200, 200),
    Case("api-notifications", "get", api("api-notifications"), 200, 200),
    Case("api-notifications", "put", api("api-notifications"), 200, 200, data={"email": "failures"}),
    # alice has an override for her pipeline (the world's); mallory has none, and may not see it.
    Case(
        "api-notification-override",
        "delete",
        api("api-notification-override", pipeline_id=lambda w: w.pipeline.pk),
        204,
        404,
    ),
    # A webhook to a name that does not resolve is refused before anything is stored.
    Case("webhook-list", "post", api("webhook-list"), 400, 400, data={"url": "https://nowhere.invalid/"}),
    Case("webhook-detail", "get", api("webhook-detail", **WEBHOOK), 200, 404),
    Case("webhook-detail", "delete", api("webhook-detail", pk=lambda w: w.webhook_to_delete.pk), 204, 404),
    Case("webhook-deliveries", "get", api("webhook-deliveries", **WEBHOOK), 200, 404),
    Case("token-list", "get", api("token-list"), 200, 200),
    Case("token-list", "post", api("token-list"), 201, 201, data={"name": "walk"}),
    Case("token-detail", "get", api("token-detail", **token("kept")), 200, 404),
    Case("token-detail", "delete", api("token-detail", **token("api-revoke")), 204, 404),
    Case("token-rotate", "post", api("token-rotate", **token("api-rotate")), 201, 404),
]
NOT_FOUND_BODY = {"detail": "Not found.", "errors": {}}


def test_the_table_covers_every_route_and_method():
    covered = {(case.route, case.method) for case in CASES}
    missing = []
    for route in all_routes():
        methods = route.methods or ("get", "post", "put", "patch", "delete")
        if not any((route.key, method) in covered for method in methods):
            missing.append(route.pattern)
        missing += [
            f"{method.upper()} {route.pattern}" for method in route.methods if (route.key, method) not in covered
        ]
    assert missing == []


def _expected(case: Case, persona: str, is_api: bool):
    value = {"alice": case.owner, "mallory": case.other, "anonymous": case.anonymous}[persona]
    if value is None:
        return 401 if is_api else LOGIN
    return value


def _send(client, case: Case, world, is_api: bool):
    url = case.url(world)
    data = case.data(world) if callable(case.data) else case.data
    if is_api:
        if data is None:
            return getattr(client, case.method)(url)
        return getattr(client, case.method)(url, json.dumps(data), content_type="application/json")
    return getattr(client, case.method)(url, data or {})


def _problems(case: Case, persona: str, response, is_api: bool) -> list[str]:
    expected = _expected(case, persona, is_api)
    where = f"{case.method.upper()} {case.route} as {persona}"
    problems = []
    status = response.status_code
    if expected == LOGIN:
        if status != 302 or not response["Location"].startswith("/accounts/login/"):
            problems.append(f"{where}: {status}, expected a redirect to the login page")
    elif status not in (expected if isinstance(expected, set) else {expected}):
        problems.append(f"{where}: {status}, expected {expected}")
    if response.get("X-Content-Type-Options") != "nosniff":
        problems.append(f"{where}: no X-Content-Type-Options: nosniff")
    content_type = response.get("Content-Type", "")
    if content_type.startswith("text/html") and "Content-Security-Policy" not in response:
        problems.append(f"{where}: an HTML page without a Content-Security-Policy")
    if case.download and status == 200 and not response.get("Content-Disposition", "").startswith("attachment"):
        problems.append(f"{where}: a download without Content-Disposition: attachment")
    if persona != "alice":
        body = b"".join(response.streaming_content) if response.streaming else response.content
        if SECRET.encode() in body:
            problems.append(f"{where}: the answer shows something of alice's")
        if is_api and status == 404 and case.route != "not_found" and json.loads(body) != NOT_FOUND_BODY:
            problems.append(f"{where}: the 404 body {body[:200]!r} differs from a plain 'Not found.'")
    return problems


def test_every_route_as_owner_other_user_and_anonymous(world, web_as, api_as):
    api_routes = {route.key for route in all_routes() if route.is_api}
    clients = {
        "web": {p: web_as(world.persona(p)) for p in ("alice", "mallory", "anonymous")},
        "api": {p: api_as(world.persona(p)) for p in ("alice", "mallory", "anonymous")},
    }
    problems = []
    for case in CASES:
        is_api = case.route in api_routes and case.route not in ("api-schema", "api-docs", "api-redoc")
        # The owner last: their answer may change things (cancel, delete) the others try first.
        for persona in ("anonymous", "mallory", "alice"):
            client = clients["api" if is_api else "web"][persona]
            if case.fresh_client:
                client = (api_as if is_api else web_as)(world.persona(persona))
            problems += _problems(case, persona, _send(client, case, world, is_api), is_api)
    assert problems == []


@pytest.mark.parametrize("suffix", ["logs.json", "result.json", "download.json", "share.json", "cancel.json"])
def test_format_suffix_urls_are_plain_404s_not_server_errors(world, api_as, suffix):
    """They were routes once, and every custom action answered them with a 500."""
    response = api_as(world.alice).get(f"/api/v1/runs/{world.run.pk}/{suffix}")
    assert response.status_code == 404
    assert response.json()["detail"].startswith("There is no API endpoint at")


@pytest.mark.parametrize("path", ["a.%0Ab/", "%C3%89%C2%AB.%0A%C3%AC/", "x%0D%0Ay.z", "%0A"])
def test_paths_with_control_characters_get_a_json_404(world, api_as, path):
    """A newline in the path once slipped past the catch-all into the site's HTML 404 (schemathesis)."""
    client = api_as(world.alice)
    response = client.patch(f"/api/v1/pipelines/{path}")
    if response.status_code == 308:  # no trailing slash: the same URL with one, which is then a 404
        response = client.patch(response["Location"])
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
