"""Usernames: one spelling per name; look-alikes of an existing name are refused with a message,
in the admin's user form as in `mlopen user create` (test_user_cli.py)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from mlopen.core.models import ApiToken
from mlopen.core.tokens import create_token
from mlopen.core.usernames import clean_new_username, skeleton

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["Admin", "ADMIN", "ａｄｍｉｎ", "аdmin", "ΑDMIN"])  # Cyrillic а, Greek Α
def test_lookalikes_of_an_existing_name_are_refused(django_user_model, name):
    django_user_model.objects.create_user(username="admin", password=None)
    with pytest.raises(ValidationError) as refused:
        clean_new_username(name)
    assert refused.value.messages[0] in (
        "The username 'admin' is taken.",
        f"The username {name!r} looks too much like the existing user 'admin'.",
    )


def test_distinct_names_and_non_latin_names_are_accepted(django_user_model):
    django_user_model.objects.create_user(username="admin", password=None)
    assert clean_new_username("administrator") == "administrator"
    assert clean_new_username("Андрей") == "Андрей"
    assert skeleton("Андрей") != skeleton("admin")


@pytest.mark.parametrize("name", ["", "   ", "a b", "x" * 151, "tab\there"])
def test_malformed_names_are_refused_with_a_message(name):
    with pytest.raises(ValidationError):
        clean_new_username(name)


def test_the_admin_user_form_refuses_a_lookalike(client, django_user_model):
    root = django_user_model.objects.create_superuser(username="root", password="root-password-1")
    django_user_model.objects.create_user(username="alice", password=None)
    client.force_login(root)

    response = client.post(
        "/admin/auth/user/add/",
        {
            "username": "аlice",
            "password1": "a-long-password-1",
            "password2": "a-long-password-1",
            "usable_password": "true",
        },
    )

    assert response.status_code == 200
    assert "looks too much like the existing user" in response.content.decode()
    assert django_user_model.objects.count() == 2


def test_the_admin_lists_tokens_without_their_values(client, django_user_model):
    root = django_user_model.objects.create_superuser(username="root", password="root-password-1")
    token, raw = create_token(root, "laptop")
    client.force_login(root)

    listing = client.get("/admin/core/apitoken/").content.decode()
    detail = client.get(f"/admin/core/apitoken/{token.pk}/change/").content.decode()

    assert "laptop" in listing and token.prefix in listing
    assert raw not in listing and raw not in detail and token.digest not in detail
    assert client.get("/admin/core/apitoken/add/").status_code == 403
    client.post("/admin/core/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    assert ApiToken.objects.get(pk=token.pk).state == "revoked"
