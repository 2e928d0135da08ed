"""Every page needs a login, carries our CSP, and has no inline script or event-handler attributes."""

from __future__ import annotations

import pytest
from web_pagecheck import event_handlers, inline_scripts

from mlopen.runs.models import Run

PAGES = ["/", "/pipelines/", "/pipelines/upload/", "/datasets/", "/datasets/upload/", "/runs/", "/runs/new/"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    PAGES
    + [
        "/pipelines/1/",
        "/datasets/1/",
        "/runs/1/",
        "/runs/1/status/",
        "/runs/1/table/",
        "/runs/1/graphs/0/",
        "/runs/new/params/",
    ],
)
def test_page_redirects_anonymous_visitor_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


@pytest.mark.django_db
def test_login_page_signs_in_and_returns_to_next_page(client, user):
    page = client.get("/accounts/login/?next=/datasets/")
    assert page.status_code == 200
    assert b"Sign in" in page.content
    assert inline_scripts(page.content.decode()) == []
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "alice-password-1", "next": "/datasets/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/datasets/"


@pytest.mark.django_db
def test_login_page_says_plainly_when_the_password_is_wrong(client, user):
    response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


@pytest.mark.django_db
def test_logout_is_a_post_form_in_the_navigation(alice_client):
    page = alice_client.get("/").content.decode()
    assert 'action="/accounts/logout/"' in page
    assert alice_client.post("/accounts/logout/").status_code == 302
    assert alice_client.get("/").status_code == 302


@pytest.mark.django_db
def test_admin_link_is_shown_to_staff_only(client_for, user, admin_user):
    assert b'href="/admin/"' not in client_for(user).get("/").content
    assert b'href="/admin/"' in client_for(admin_user).get("/").content


@pytest.mark.django_db
def test_every_page_has_csp_and_no_inline_script(client_for, author, make_pipeline, make_run):
    pipeline = make_pipeline(params_run=[{"name": "k", "type": "integer", "default": 3}])
    run = make_run(
        author,
        pipeline,
        result={
            "columns": ["a"],
            "data": [[1]],
            "text": "<b>x</b>",
            "graphs": [
                {"kind": "figure", "figure": {"data": [{"type": "bar", "y": [1]}], "layout": {}}},
                {"kind": "html", "html": "<div>hi</div><script>alert(1)</script>"},
            ],
        },
    )
    failed = make_run(author, pipeline, status=Run.Status.FAILED, error="boom")
    running = make_run(author, pipeline, status=Run.Status.RUNNING, log="line 1\n")
    client = client_for(author)
    paths = PAGES + [
        f"/pipelines/{pipeline.pk}/",
        f"/runs/{run.pk}/",
        f"/runs/{failed.pk}/",
        f"/runs/{running.pk}/",
        f"/runs/{running.pk}/status/",
        f"/runs/{run.pk}/table/",
        f"/runs/new/?pipeline={pipeline.pk}&kind=run",
        f"/runs/new/params/?pipeline={pipeline.pk}",
        "/runs/999999/",
    ]
    for path in paths:
        response = client.get(path)
        assert response.status_code == (404 if path == "/runs/999999/" else 200), path
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        html = response.content.decode()
        assert inline_scripts(html) == [], path
        assert event_handlers(html) == [], path


@pytest.mark.django_db
def test_unknown_page_shows_friendly_404(alice_client):
    response = alice_client.get("/runs/424242/")
    assert response.status_code == 404
    assert b"There is nothing here" in response.content
