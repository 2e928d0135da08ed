"""The account page: one's API tokens (made, rotated, revoked with htmx; a new one shown once, then
never again) and a password change that revokes the tokens unless told not to."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from mlopen.core import tokens
from mlopen.core.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-password-1")


@pytest.fixture
def mallory(django_user_model):
    return django_user_model.objects.create_user(username="mallory", password="mallory-password-1")


def _works(raw: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client.get("/api/v1/me/").status_code == 200


def test_the_account_page_lists_ones_tokens_without_their_values(client_for, alice, mallory):
    _, raw = tokens.create_token(alice, "laptop")
    tokens.create_token(mallory, "mallorys-token")

    page = client_for(alice).get("/account/")

    html = page.content.decode()
    assert page.status_code == 200
    assert "laptop" in html and raw[:12] in html and raw not in html
    assert "mallorys-token" not in html
    assert 'href="/account/"' in html and 'href="/account/webhooks/"' in html  # the account menu
    assert page["Cache-Control"] == "no-store"


def test_a_new_token_is_shown_once_in_the_htmx_partial(client_for, alice):
    client = client_for(alice)

    made = client.post("/account/tokens/", {"name": "ci", "expires_in_days": "30"}, HTTP_HX_REQUEST="true")

    html = made.content.decode()
    assert made.status_code == 200 and "<html" not in html and 'id="tokens"' in html
    token = ApiToken.objects.get(user=alice)
    raw = html.split('aria-label="The new token"')[0].rsplit('value="', 1)[1].split('"')[0]
    assert raw.startswith(token.prefix) and _works(raw)
    assert token.expires_at is not None
    assert raw not in client.get("/account/").content.decode()


def test_rotate_and_revoke_from_the_page(client_for, alice):
    rotated_token, rotated_raw = tokens.create_token(alice, "rotate me")
    revoked_token, revoked_raw = tokens.create_token(alice, "revoke me")
    client = client_for(alice)

    rotated = client.post(f"/account/tokens/{rotated_token.pk}/rotate/", HTTP_HX_REQUEST="true")
    revoked = client.post(f"/account/tokens/{revoked_token.pk}/revoke/", HTTP_HX_REQUEST="true")

    assert rotated.status_code == 200 and "New token “rotate me”" in rotated.content.decode()
    assert revoked.status_code == 200
    assert not _works(rotated_raw) and not _works(revoked_raw)
    assert ApiToken.objects.filter(user=alice, name="rotate me", revoked_at__isnull=True).count() == 1


def test_another_users_token_is_a_404_on_the_page(client_for, alice, mallory):
    token, raw = tokens.create_token(alice, "laptop")
    outsider = client_for(mallory)

    assert outsider.post(f"/account/tokens/{token.pk}/revoke/").status_code == 404
    assert outsider.post(f"/account/tokens/{token.pk}/rotate/").status_code == 404
    assert outsider.post("/account/tokens/99999999999999999999/revoke/").status_code == 404
    assert _works(raw)


def test_a_bad_token_name_is_a_400_next_to_the_field(client_for, alice):
    response = client_for(alice).post("/account/tokens/", {"name": "", "expires_in_days": "²"})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_password_change_revokes_the_tokens_by_default(client_for, alice):
    _, raw = tokens.create_token(alice, "laptop")
    client = client_for(alice)

    changed = client.post(
        "/account/password/",
        {
            "old_password": "alice-password-1",
            "new_password1": "a-new-long-password-2",
            "new_password2": "a-new-long-password-2",
            "revoke_tokens": "on",
        },
    )

    assert changed.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("a-new-long-password-2")
    assert not _works(raw)
    assert "revoked when the password changed" in ApiToken.objects.get(user=alice).revoked_reason
    assert client.get("/account/").status_code == 200  # this browser stays signed in


def test_a_password_change_may_keep_the_tokens(client_for, alice):
    _, raw = tokens.create_token(alice, "laptop")
    client_for(alice).post(
        "/account/password/",
        {
            "old_password": "alice-password-1",
            "new_password1": "a-new-long-password-2",
            "new_password2": "a-new-long-password-2",
        },
    )
    alice.refresh_from_db()
    assert alice.check_password("a-new-long-password-2")
    assert _works(raw)


def test_a_wrong_old_password_changes_nothing(client_for, alice):
    _, raw = tokens.create_token(alice, "laptop")
    response = client_for(alice).post(
        "/account/password/",
        {"old_password": "wrong", "new_password1": "a-new-long-password-2", "new_password2": "a-new-long-password-2"},
    )
    assert response.status_code == 400
    alice.refresh_from_db()
    assert alice.check_password("alice-password-1") and _works(raw)
