"""A real browser opens a run whose pipeline returned hostile HTML everywhere it could.

Nothing of it runs in our page: the title stays, no dialog opens, the browser stays on the run's
page, our origin's storage is untouched. The formatting, the table and the graphs still show, and
the HTML graph's own script runs, inside its sandboxed frame only.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.engine]

CHROMIUM = "/usr/bin/chromium"
HOSTILE_NAME = "<img src=x onerror=\"document.title='pwned';alert('pwned')\">.csv"


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
        page.dialogs = []

        def on_dialog(dialog):
            page.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        yield page
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def test_hostile_pipeline_output_runs_nothing_but_still_shows(
    live_server, author, worker, upload_pipeline, api_for, browser_page, wait_for_run, settings
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.MLOPEN_BASE_URL = live_server.url  # the graph frame loads plotly.js from the site's own URL

    page = browser_page
    pipeline = upload_pipeline("hostile_output.py")
    client = api_for(author)
    dataset = client.post(
        "/api/v1/datasets/",
        {"file": SimpleUploadedFile("data.csv", b"a,b\n1,2\n"), "name": HOSTILE_NAME},
        format="multipart",
    ).json()
    run = client.post("/api/v1/runs/", {"pipeline": pipeline["id"], "input": dataset["id"]}, format="json").json()
    assert wait_for_run(run["id"]).status == "succeeded"

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "ada-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    run_url = f"{live_server.url}/runs/{run['id']}/"
    page.goto(run_url)
    title = f"Run {run['id']} · hostile_output · mlopen"
    assert page.title() == title

    # The formatting, the table and all three graphs are there.
    assert page.inner_text("#run-text b") == "Bold stays"  # ids are dropped, the tags kept
    assert page.inner_text("#run-text i") == "italic stays"
    assert page.inner_text("#run-text table td") == "cell stays"
    assert page.inner_text("#result-table tbody tr:first-child td:first-child").startswith("<script>")
    assert "name <script>" in page.inner_text("#result-table thead")
    page.wait_for_selector("#graph-0 svg.main-svg")
    page.wait_for_selector("#graph-1 svg.main-svg")
    frame = page.frame_locator("#graph-2")
    frame.locator("#frame-graph:has-text('drawn inside the frame')").wait_for()

    # Poke at whatever might be left: hover, click links and summaries, wait for timers.
    page.hover("#run-text")
    page.hover("#graph-0")
    for selector in ("#run-text a", "#run-text summary", "#result-table td"):
        for element in page.locator(selector).all():
            element.click(timeout=2000, no_wait_after=True)
    page.wait_for_timeout(1500)

    assert page.title() == title
    assert page.dialogs == []
    assert page.url.startswith(run_url)
    assert page.evaluate("localStorage.getItem('x')") is None
    assert page.locator("#graph-2").evaluate("el => el.clientHeight") <= 2004  # its size message is capped
    assert (
        page.locator("#run-text script, #run-text svg, #run-text iframe, #run-text form, #run-text [onerror]").count()
        == 0
    )
    assert page.locator("head base, head meta[http-equiv]").count() == 0

    # The dataset's hostile name is shown as text on its page too.
    page.goto(f"{live_server.url}/datasets/{dataset['id']}/")
    assert page.inner_text("h1") == HOSTILE_NAME
    page.wait_for_timeout(300)
    assert page.title() == f"{HOSTILE_NAME} · mlopen" and page.dialogs == []
