"""Missing authorization on one route (the Airflow CVE-2024-27906 / MLflow issue 24567 class).

Every route of the URL conf declares who may call it, and a route that declares nothing is still
closed: Django's LoginRequiredMiddleware sends anonymous visitors to the login page.
"""

from __future__ import annotations

import pytest
from django.http import HttpResponse
from django.urls import path
from security_routes import all_routes, declared_permission

from mlopen.core.access import PUBLIC, access

pytestmark = pytest.mark.django_db

# The only routes anyone may call without logging in. Adding one here is a decision to review.
PUBLIC_ROUTES = {"healthz", "login", "api-schema", "api-docs", "api-redoc", "not_found"}


def test_every_route_declares_who_may_call_it():
    undeclared = [route.pattern for route in all_routes() if declared_permission(route) is None]
    assert undeclared == [], f"routes without a declared access policy: {undeclared}"


def test_only_the_login_health_and_schema_routes_are_public():
    public = {route.key for route in all_routes() if declared_permission(route) in (PUBLIC, "Public", "AllowAny")}
    assert public == PUBLIC_ROUTES


def test_object_routes_of_the_api_need_the_owner_to_change_anything():
    object_routes = [
        route
        for route in all_routes()
        if route.is_api and route.key.split("-")[0] in ("dataset", "run") and "pk" in route.groups
    ]
    # The walk must find the routes it is about (detail, download, logs, cancel, share...), or it proves nothing.
    assert len(object_routes) >= 8, [route.pattern for route in object_routes]
    for route in object_routes:
        assert declared_permission(route) == "LoggedIn+OwnerOrAdminToChange", route.pattern


def _undeclared(request):
    return HttpResponse("secret")


def _declared_public(request):
    return HttpResponse("hello")


urlpatterns = [path("undeclared/", _undeclared), path("public/", access(PUBLIC)(_declared_public))]


def test_a_page_that_declares_nothing_is_closed_to_anonymous_visitors(client, settings):
    settings.ROOT_URLCONF = __name__
    response = client.get("/undeclared/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/undeclared/")
    assert client.get("/public/").content == b"hello"


def test_the_admin_site_is_closed_to_anonymous_visitors_and_to_non_staff(client, django_user_model):
    assert client.get("/admin/").status_code == 302
    person = django_user_model.objects.create_user(username="plain", password=None)
    client.force_login(person)
    response = client.get("/admin/datasets/storagequota/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_password_reset_by_mail_is_not_offered(client):
    # No mail is configured and users are made by admins: the reset pages are not mounted at all.
    assert client.get("/accounts/password_reset/").status_code == 404
