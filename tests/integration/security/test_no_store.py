"""What a signed-in user is sent is never stored by a browser or a cache; public pages and static
files are cached as before."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_pages_and_api_answers_for_a_signed_in_user_say_no_store(world, web_as, api_as):
    for response in (
        web_as(world.alice).get("/"),
        web_as(world.alice).get(f"/runs/{world.run.pk}/"),
        web_as(world.mallory).get(f"/runs/{world.run.pk}/"),  # a 404 too
        api_as(world.alice).get("/api/v1/me/"),
        api_as(world.alice).get(f"/api/v1/runs/{world.run.pk}/download/"),
    ):
        assert response["Cache-Control"] == "no-store", response.wsgi_request.path


def test_the_login_page_keeps_djangos_own_header_and_static_files_stay_cacheable(client):
    # Django's LoginView is never_cache already; the middleware leaves anonymous answers alone.
    assert client.get("/accounts/login/")["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
    static = client.get("/static/mlopen/app.css")
    assert static.status_code == 200
    assert "no-store" not in static.get("Cache-Control", "")
