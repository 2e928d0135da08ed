"""Dark mode, the admin in the app's colours, and the API docs with the way back to the app."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_theme_script_runs_in_head_before_the_page_is_drawn_and_the_navbar_has_the_toggle(client_for, user):
    page = client_for(user).get("/").content.decode()
    head, body = page.split("</head>", 1)
    assert '<script src="/static/mlopen/theme.js"></script>' in head  # blocking: no light flash
    for choice in ("light", "dark", "auto"):
        assert f'data-theme-choice="{choice}"' in body


def test_login_page_follows_the_theme_too(client):
    page = client.get("/accounts/login/").content.decode()
    assert "mlopen/theme.js" in page.split("</head>")[0]


def test_admin_has_the_apps_colours_and_a_link_back(client_for, admin_user):
    admin_user.is_staff = True
    admin_user.save()
    page = client_for(admin_user).get("/admin/").content.decode()
    assert "mlopen/admin.css" in page
    assert '<a href="/" class="mlopen-brand">mlopen</a>' in page
    assert "Back to mlopen" in page


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_api_docs_pages_have_the_apps_bar(client_for, user, url):
    page = client_for(user).get(url).content.decode()
    assert 'class="mlopen-docs-bar"' in page
    assert '<a class="brand" href="/">mlopen</a>' in page and 'href="/runs/"' in page
