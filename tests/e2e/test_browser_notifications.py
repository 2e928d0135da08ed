"""A real browser, a live server and a real worker: a page that is open when a run ends says so, in
its tab's title and with a browser notification (the 'notifications' permission granted to the
browser context; window.Notification replaced by a recorder, since a headless browser shows none).
The runs list sees it through its live fragment; the run page through its status panel."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.engine]

CHROMIUM = "/usr/bin/chromium"
SLOW = """
import time

def train(inpt, params=None):
    pass

def run_pipeline(input, model, args, params=None):
    time.sleep(4)
    return {"columns": ["n"], "data": [[1]]}
"""
# Records what the page asks the browser to show, keeping the permission the context was granted.
RECORDER = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  class Recorded {
    constructor(title, options) {
      const shown = { title, body: (options || {}).body || "" };
      window.__notifications.push(shown);
      window.recordNotification(shown);  // to the test, across the run page's reload
    }
    static get permission() { return Real.permission; }
    static requestPermission() { return Real.requestPermission(); }
  }
  window.Notification = Recorded;
})();
"""


@pytest.fixture
def browser_context(live_server):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.grant_permissions(["notifications"], origin=live_server.url)
        shown: list[dict] = []
        context.shown = shown

        def record(notification: dict) -> None:
            shown.append(notification)

        context.expose_function("recordNotification", record)
        context.add_init_script(RECORDER)
        context.set_default_timeout(30_000)
        yield context
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def _log_in(page, base):
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "root-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def _start(api, pipeline="slow"):
    response = api.post("/api/v1/runs/", {"pipeline": pipeline, "kind": "run"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_an_open_page_tells_when_a_run_ends(live_server, api, worker, upload_pipeline, browser_context):
    upload_pipeline("slow.py", source=SLOW)
    base = live_server.url
    page = browser_context.new_page()
    _log_in(page, base)

    # The notifications page: this browser is allowed, so no button to ask.
    page.goto(f"{base}/account/notifications/")
    assert "This browser shows a notification" in page.inner_text("#browser-notifications")
    assert not page.is_visible("[data-ask-notifications]")

    # The runs list, open while a run starts and ends: its live fragment brings the row, then its end.
    page.goto(f"{base}/runs/")
    assert page.title() == "Runs · mlopen"
    first = _start(api)
    page.wait_for_selector(f'tr[data-run-id="{first}"]', timeout=20_000)
    page.wait_for_selector(f'tr[data-run-id="{first}"][data-run-status="succeeded"]', timeout=90_000)
    page.wait_for_function("window.__notifications.length === 1")
    # The runs list labels a run by its display name ("<pipeline> #<id>" when nobody named it).
    assert page.evaluate("window.__notifications") == [{"title": f"Run #{first} succeeded", "body": f"slow #{first}"}]
    assert page.title() == f"✓ run #{first} succeeded — mlopen"

    # The run page, open while its run goes: it reloads to show the result, keeping the title it set.
    second = _start(api)
    page.goto(f"{base}/runs/{second}/")
    page.wait_for_selector('#run-status[data-run-status="succeeded"]', timeout=90_000)
    assert re.fullmatch(rf"✓ run #{second} succeeded — mlopen", page.title())
    # The notification was shown just before the reload (the page after it has recorded none).
    assert page.evaluate("window.__notifications") == []
    assert browser_context.shown[-1] == {"title": f"Run #{second} succeeded", "body": f"slow #{second}"}
    assert len(browser_context.shown) == 2
