"""A real browser against a live server and a real worker: sign in, upload a pipeline and a
dataset through the pages, train, run, and read the table, the plotly graphs and the text.

Screenshots of the pages land in docs/screenshots/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "tests" / "fixtures" / "pipelines"
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CSV = "name,value\nalpha,1\nbeta,2\ngamma,6\n"


@pytest.fixture
def browser_page(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still sync.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        page.csp_violations = []
        page.on("console", lambda msg: "Content Security Policy" in msg.text and page.csp_violations.append(msg.text))
        yield page
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def shot(page, name: str) -> None:
    """A full-page screenshot. Chromium leaves sandboxed (out-of-process) frames blank in full_page
    captures, so the viewport is stretched to the page's height instead."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    viewport = page.viewport_size
    height = page.locator("body").evaluate("el => el.scrollHeight")
    page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"], height)})
    page.wait_for_timeout(300)
    page.screenshot(path=str(SHOTS / name))
    page.set_viewport_size(viewport)


def choose_option(page, select: str, text: str) -> None:
    value = page.locator(f"{select} option", has_text=text).first.get_attribute("value")
    page.select_option(select, value=value)


def wait_for_status(page, status: str, timeout: float = 90_000) -> None:
    """The run page polls its status panel and reloads itself when the run ends."""
    page.wait_for_selector(f'#run-status[data-run-status="{status}"]', timeout=timeout)


def test_browser_upload_train_run_and_read_results(
    live_server, author, worker, upload_pipeline, browser_page, tmp_path, settings
):
    settings.MLOPEN_BASE_URL = live_server.url  # the graph frame loads plotly.js from the site's own URL
    page = browser_page
    base = live_server.url
    upload_pipeline("web_params.py")  # a second pipeline, to switch between in the run form
    data_file = tmp_path / "values.csv"
    data_file.write_text(CSV)

    # Sign in.
    page.goto(f"{base}/pipelines/")
    assert page.url.startswith(f"{base}/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "ada-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/pipelines/")

    # Upload the legacy control file through the upload page.
    page.click("text=Upload a pipeline")
    page.set_input_files("#id_control", str(PIPELINES / "web_legacy.py"))
    page.fill("#id_description", "Scores each row against the mean of the training data.")
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r".*/pipelines/\d+/$"))
    assert "web_legacy version 1 is uploaded" in page.inner_text(".alert-success")
    pipeline_url = page.url

    # Upload a CSV dataset; its page previews it.
    page.goto(f"{base}/datasets/")
    page.set_input_files("#id_file", str(data_file))
    page.click("form[action='/datasets/upload/'] button[type=submit]")
    page.wait_for_url(re.compile(r".*/datasets/\d+/$"))
    assert page.inner_text("table thead").split() == ["name", "value"]
    page.goto(f"{base}/datasets/")
    shot(page, "datasets.png")

    # Train it from the pipeline page.
    page.goto(pipeline_url)
    page.click("a:has-text('Train')")
    choose_option(page, "#id_input", "values.csv")
    page.click("#run-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/runs/\d+/$"))
    wait_for_status(page, "succeeded")
    assert "model #1" in page.inner_text("main")

    # The run form: switching the pipeline re-renders its parameters (htmx), with defaults filled in.
    page.goto(f"{base}/runs/new/")
    page.select_option("#id_pipeline", label="web_params")
    page.wait_for_selector("input[name='params.k']")
    assert page.input_value("input[name='params.k']") == "5"
    assert page.is_checked("input[name='params.verbose']")
    choose_option(page, "#id_input", "values.csv")
    shot(page, "run-form.png")
    page.click("label[for=id_kind_0]")  # Train: the training parameters replace the run parameters
    page.wait_for_selector("input[name='params.epochs']")
    assert page.locator("input[name='params.k']").count() == 0
    assert "kind=train" in page.url  # the address follows the choice
    page.click("label[for=id_kind_1]")
    page.select_option("#id_pipeline", label="web_legacy")
    page.wait_for_selector("text=This pipeline takes no parameters to run.")
    # Switching the pipeline preselects its own input (the one last used with it, or its example).
    choose_option(page, "#id_input", "values.csv")
    page.click("#run-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/runs/\d+/$"))
    wait_for_status(page, "succeeded")

    # Results: the table, a figure drawn by our plotly.js, the sandboxed HTML graph, formatted text.
    assert page.locator("#result-table tbody tr").count() == 3
    assert page.inner_text("#result-table tbody tr:first-child td:first-child") == "alpha"
    page.wait_for_selector("#graph-0 svg.main-svg")
    page.wait_for_selector("#graph-1 svg.main-svg")  # the plotly div, parsed into a figure
    frame = page.frame_locator("#graph-2")
    assert "drawn by the graph's own script" in frame.locator("#custom-graph").inner_text()
    frame.locator("#custom-plot svg.main-svg").first.wait_for()  # our static plotly.js, inside the sandbox
    assert page.inner_text("#run-text b") == "Mean value"
    assert page.locator("#run-text script, #run-text img[onerror]").count() == 0

    # Sorting by a column header swaps in the table sorted on the server.
    page.click("#result-table th:nth-child(2) a")
    page.wait_for_selector("#result-table th[aria-sort=ascending]")
    page.click("#result-table th:nth-child(2) a")
    page.wait_for_selector("#result-table th[aria-sort=descending]")
    assert page.inner_text("#result-table tbody tr:first-child td:first-child") == "gamma"
    page.goto(page.url.split("?")[0])
    page.wait_for_selector("#graph-1 svg.main-svg")
    frame.locator("#custom-plot svg.main-svg").first.wait_for()
    page.wait_for_timeout(500)
    assert page.locator("#graph-2").evaluate("el => el.clientHeight") < 480  # sized to its content
    shot(page, "run-result.png")

    page.goto(pipeline_url)
    shot(page, "pipeline-detail.png")
    page.goto(f"{base}/pipelines/")
    shot(page, "pipelines.png")
    page.goto(f"{base}/runs/")
    shot(page, "runs.png")
    page.goto(f"{base}/")
    shot(page, "dashboard.png")
    assert page.csp_violations == []


def test_browser_watches_a_run_live_until_it_finishes(live_server, author, worker, upload_pipeline, browser_page):
    page = browser_page
    upload_pipeline("web_slow.py")
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "ada-password-1")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/runs/new/?kind=run")
    page.select_option("#id_pipeline", label="web_slow")
    page.wait_for_selector("input[name='params.steps']")
    page.fill("input[name='params.steps']", "16")
    page.fill("input[name='params.pause']", "0.4")
    page.click("#run-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/runs/\d+/$"))

    # The panel refreshes itself every second: the progress bar moves and the log grows.
    page.wait_for_selector("#run-log:has-text('step 5 of 16')", timeout=60_000)
    page.wait_for_selector("#run-status .progress-bar")
    page.wait_for_selector("#run-status .metric-chart svg.main-svg")
    log = page.locator("#run-log")
    assert log.evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") < 30  # kept scrolled down
    shot(page, "run-live.png")

    # When it ends, the page reloads itself with the result.
    wait_for_status(page, "succeeded", timeout=60_000)
    assert "finished 16 steps" in page.inner_text("#run-text")
    assert page.locator(".metric-chart.js-plotly-plot").count() == 1
    assert page.csp_violations == []


def test_browser_shows_result_images_as_thumbnails_that_open_in_a_lightbox(
    live_server, author, worker, upload_pipeline, browser_page
):
    pytest.importorskip("matplotlib")
    page = browser_page
    upload_pipeline("web_images.py")
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "ada-password-1")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/runs/new/?kind=run")
    page.select_option("#id_pipeline", label="web_images")
    page.wait_for_selector("text=This pipeline takes no parameters to run.")
    page.click("#run-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/runs/\d+/$"))
    wait_for_status(page, "succeeded", timeout=90_000)

    thumbnails = page.locator("#result-images .result-thumb img")
    assert thumbnails.count() == 3
    assert page.locator("#result-images figcaption").all_inner_texts() == [
        "graph-1.png",
        "confusion_matrix.png",
        "images-1.svg",
    ]
    for index in range(3):  # each image really loaded and decoded (the SVG too, as an <img>)
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=thumbnails.nth(index).element_handle()
        )
    shot(page, "run-images.png")

    page.click("#result-images .result-thumb >> nth=1")
    page.wait_for_selector("#image-modal-1.show .result-image-full")
    page.wait_for_timeout(400)  # the modal's fade
    page.screenshot(path=str(SHOTS / "run-image-lightbox.png"))
    page.keyboard.press("Escape")
    page.wait_for_selector("#image-modal-1", state="hidden")
    assert page.csp_violations == []
