"""/api/v1/me/notifications/: one's default and per-pipeline notification choices."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def pipeline(db):
    from mlopen.pipelines.models import Pipeline

    return Pipeline.objects.create(name="iris")


def test_without_a_choice_email_is_off_and_the_browser_tells_every_ending(api_for, user):
    response = api_for(user).get("/api/v1/me/notifications/")
    assert response.status_code == 200
    assert response.json() == {
        "email_address": "",
        "default": {"pipeline": None, "pipeline_name": None, "email": "off", "browser": "all"},
        "pipelines": [],
    }


def test_a_pipeline_override_keeps_the_defaults_other_channel(api_for, user, pipeline):
    client = api_for(user)
    assert client.put("/api/v1/me/notifications/", {"email": "all"}, format="json").status_code == 200
    response = client.put("/api/v1/me/notifications/", {"pipeline": "iris", "email": "failures"}, format="json")
    assert response.status_code == 200
    assert response.json()["default"]["email"] == "all"
    assert response.json()["pipelines"] == [
        {"pipeline": pipeline.pk, "pipeline_name": "iris", "email": "failures", "browser": "all"}
    ]
    assert client.delete(f"/api/v1/me/notifications/pipelines/{pipeline.pk}/").status_code == 204
    assert client.get("/api/v1/me/notifications/").json()["pipelines"] == []
    assert client.delete(f"/api/v1/me/notifications/pipelines/{pipeline.pk}/").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "sometimes"}, "email"),
        ({"browser": 1}, "browser"),
        ({"pipeline": "no-such-pipeline", "email": "all"}, "pipeline"),
        ({"pipeline": [1], "email": "all"}, "pipeline"),
        ({"pipeline": 10**30, "email": "all"}, "pipeline"),
        ({}, "email"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api_for, user, pipeline, body, field):
    response = api_for(user).put("/api/v1/me/notifications/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def test_a_pipeline_one_cannot_see_is_refused_like_one_that_does_not_exist(api_for, user, outsider_api, pipeline):
    from django.contrib.auth.models import Group

    from mlopen.pipelines.models import Pipeline

    Pipeline.objects.filter(pk=pipeline.pk).update(private_group=Group.objects.create(name="team"))
    response = outsider_api.put("/api/v1/me/notifications/", {"pipeline": pipeline.pk, "email": "all"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["pipeline"] == f"There is no pipeline {pipeline.pk!r}."


@pytest.fixture
def outsider_api(api_for, django_user_model):
    return api_for(django_user_model.objects.create_user(username="mallory", password="mallory-password-1"))
