"""The webhooks page: one's own webhooks with their latest calls, linked from the account menu."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_the_webhooks_page_shows_ones_own_webhooks_and_their_calls(client_for, django_user_model):
    from mlopen.notifications.models import Webhook, WebhookDelivery

    alice = django_user_model.objects.create_user(username="alice", password=None)
    mallory = django_user_model.objects.create_user(username="mallory", password=None)
    hook = Webhook.objects.create(
        owner=alice, url="https://93.184.215.14/alice-hook", events=["run.failed"], secret="k"
    )
    WebhookDelivery.objects.create(
        webhook=hook,
        event="run.failed",
        state="failed",
        status_code=503,
        attempts=6,
        error="The receiver answered 503.",
    )
    Webhook.objects.filter(pk=hook.pk).update(failing=True)

    page = client_for(alice).get("/account/webhooks/")
    other = client_for(mallory).get("/account/webhooks/")

    html = page.content.decode()
    assert page.status_code == 200
    assert "alice-hook" in html and "The receiver answered 503." in html and "failing" in html
    assert 'href="/account/webhooks/"' in html  # the account menu links to it
    assert "alice-hook" not in other.content.decode()
    assert "You have no webhooks." in other.content.decode()
