"""A real browser on the account page: a token is made, shown once, rotated and revoked through
htmx (CSRF included), and the token works against the API until it is revoked."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop in this thread
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        page.on("dialog", lambda dialog: dialog.accept())  # the revoke button asks first
        yield page
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def _works(url: str, token: str) -> bool:
    return httpx.get(f"{url}/api/v1/me/", headers={"Authorization": f"Token {token}"}).status_code == 200


def test_tokens_are_made_rotated_and_revoked_on_the_account_page(live_server, author, browser_page):
    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "ada-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.click("text=ada")
    page.click("text=Account and API tokens")
    page.wait_for_url(f"{live_server.url}/account/")

    page.fill("#id_name", "laptop")
    page.select_option("#id_expires_in_days", "30")
    page.click("#tokens button[type=submit]:has-text('New token')")
    first = page.locator("#new-token input").input_value()
    assert first.startswith("mlo_") and _works(live_server.url, first)
    assert page.url == f"{live_server.url}/account/"  # htmx swapped the card; no navigation
    page.screenshot(path=str(SCREENSHOTS / "account.png"), full_page=True)

    page.click("#tokens tr:has-text('laptop') button:has-text('Rotate')")
    # The first token's box is still there until htmx swaps in the rotated one: wait for a new value.
    page.wait_for_function(
        "first => { const box = document.querySelector('#new-token input'); return box && box.value !== first; }",
        arg=first,
    )
    second = page.locator("#new-token input").input_value()
    assert second != first and _works(live_server.url, second) and not _works(live_server.url, first)

    page.click("#tokens tr:has-text('laptop'):has(.text-bg-success) button:has-text('Revoke')")
    page.locator("#tokens:not(:has(#new-token))").wait_for()
    assert not _works(live_server.url, second)
    page.reload()
    assert first not in page.content() and second not in page.content()
