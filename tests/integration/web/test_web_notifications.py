"""The notifications page (/account/notifications/): one's default and per-pipeline choices."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_the_page_shows_the_defaults_and_saves_a_pipeline_override(alice_client, user, make_pipeline):
    from mlopen.notifications.preferences import effective

    pipeline = make_pipeline()
    page = alice_client.get("/account/notifications/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'href="/account/notifications/"' in html  # in the account menu
    assert "data-ask-notifications" in html  # the permission is asked from a button
    assert "no e-mail address" in html

    saved = alice_client.post(
        "/account/notifications/", {"pipeline": pipeline.pk, "email": "failures", "browser": "off"}
    )
    assert saved.status_code == 302
    assert effective(user.pk, pipeline.pk) == effective(user.pk, pipeline.pk).__class__("failures", "off", pipeline.pk)
    assert effective(user.pk, None).email == "off"  # the default is untouched
    html = alice_client.get("/account/notifications/").content.decode()
    assert f'data-pipeline="{pipeline.pk}"' in html and "failed runs only" in html

    alice_client.post("/account/notifications/", {"action": "delete", "pipeline": pipeline.pk})
    assert effective(user.pk, pipeline.pk).pipeline_id is None


def test_a_bad_choice_is_refused_with_the_field_named(alice_client):
    response = alice_client.post("/account/notifications/", {"email": "sometimes", "browser": "all"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()


def test_an_outsider_cannot_set_a_preference_for_a_pipeline_they_cannot_see(client_for, outsider, user, make_pipeline):
    from django.contrib.auth.models import Group

    from mlopen.notifications.models import NotificationPreference
    from mlopen.pipelines.models import Pipeline

    pipeline = make_pipeline()
    Pipeline.objects.filter(pk=pipeline.pk).update(private_group=Group.objects.create(name="team"))
    response = client_for(outsider).post(
        "/account/notifications/", {"pipeline": pipeline.pk, "email": "all", "browser": "all"}
    )
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not NotificationPreference.objects.exists()


def test_the_storage_page_is_for_admins_only(client_for, user, admin_user):
    assert client_for(user).get("/storage/").status_code == 403
    page = client_for(admin_user).get("/storage/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="storage-by-user"' in html and 'id="orphans"' in html and 'id="retention-preview"' in html
