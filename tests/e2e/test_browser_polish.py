"""A real browser on the pages' finish: dark mode, the lists on a 390 px phone, the result table's
page size and jump, and a dataset's statistics. No worker: the runs are made as a worker leaves them.

Screenshots land in docs/screenshots/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def browser(transactional_db):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"]
        )
        yield launched
        launched.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def signed_in(browser, live_server, *, viewport=None, color_scheme="light"):
    page = browser.new_page(viewport=viewport or {"width": 1280, "height": 900}, color_scheme=color_scheme)
    page.set_default_timeout(30_000)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "ada-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return page


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)
    page.screenshot(path=str(SHOTS / name), full_page=True)


@pytest.fixture
def content(author):
    """A pipeline with a finished run (a 120-row table, an accuracy metric), a failed and a queued run,
    and a dataset."""
    from django.utils import timezone

    from mlopen.datasets.services import store_dataset
    from mlopen.pipelines.models import Pipeline, PipelineVersion
    from mlopen.runs import results
    from mlopen.runs.models import Run, RunMetric

    pipeline = Pipeline.objects.create(name="iris_classifier_with_a_long_name", description="Classifies iris flowers.")
    PipelineVersion.objects.create(
        pipeline=pipeline, number=1, control_filename="iris.py", folder=f"pipelines/{pipeline.pk}/v1"
    )
    now = timezone.now()

    def run(status, **fields):
        return Run.objects.create(
            pipeline=pipeline,
            version=pipeline.latest_version,
            kind="run",
            owner=author,
            status=status,
            started_at=None if status == "queued" else now - timezone.timedelta(seconds=75),
            finished_at=now if status in Run.FINISHED else None,
            worker="" if status == "queued" else "worker-1",
            input_name="iris_measurements_2026.csv",
            **fields,
        )

    run("failed", error="ValueError: the column 'petal_width' is missing")
    run("queued")
    done = run("succeeded")
    table = {"columns": ["n", "species"], "data": [[i, ["setosa", "virginica"][i % 2]] for i in range(120)]}
    folder, rows = results.store_result(
        done.pk, {"columns": None, "data": None, "graphs": [], "text": None, "warnings": [], **table}, []
    )
    Run.objects.filter(pk=done.pk).update(result_folder=folder, result_rows=rows)
    for step, value in enumerate([0.91, 0.95, 0.97, 0.98, 0.99], start=1):
        RunMetric.objects.create(run=done, name="accuracy", step=step, value=value)
    csv = b"sepal_length,sepal_width,species\n5.1,3.5,setosa\n4.9,,setosa\n6.3,3.3,virginica\n5.8,2.7,virginica\n"
    dataset = store_dataset(owner=author, name="iris_measurements_2026.csv", filename="iris.csv", chunks=[csv])
    return {"run": done, "dataset": dataset, "pipeline": pipeline}


def test_dark_mode_follows_the_system_and_the_toggle_is_remembered(browser, live_server, content):
    page = signed_in(browser, live_server, color_scheme="dark")
    assert page.get_attribute("html", "data-bs-theme") == "dark"  # no choice made: the system's
    page.click("#theme-toggle")
    page.click("[data-theme-choice=light]")
    assert page.get_attribute("html", "data-bs-theme") == "light"
    page.reload()
    assert page.get_attribute("html", "data-bs-theme") == "light"  # remembered over the system's dark
    page.click("#theme-toggle")
    page.click("[data-theme-choice=dark]")
    page.goto(f"{live_server.url}/runs/{content['run'].pk}/")
    page.wait_for_selector(".metric-chart .main-svg")
    assert page.get_attribute("html", "data-bs-theme") == "dark"
    # The chart follows: a transparent background and light text.
    assert page.evaluate("document.querySelector('.metric-chart').layout.paper_bgcolor") == "rgba(0,0,0,0)"
    assert page.evaluate("document.querySelector('.metric-chart').layout.font.color") == "#dee2e6"
    shot(page, "dark-mode.png")
    page.click("#theme-toggle")
    page.click("[data-theme-choice=auto]")
    assert page.evaluate("localStorage.getItem('mlopen-theme')") is None


@pytest.mark.parametrize(("path", "name"), [("/runs/", "runs"), ("/datasets/", "datasets")])
def test_lists_on_a_phone_keep_status_and_time_in_view(browser, live_server, content, path, name):
    page = signed_in(browser, live_server, viewport=PHONE)
    page.goto(f"{live_server.url}{path}")
    table = page.locator(".table-responsive").first
    # Nothing scrolls sideways: every kept column fits the screen.
    assert table.evaluate("el => el.scrollWidth <= el.clientWidth"), table.evaluate("el => el.scrollWidth")
    first_row = page.locator("tbody tr").first
    if name == "runs":
        assert first_row.locator(".col-status").is_visible()
    assert first_row.locator(".col-time").is_visible()
    box = first_row.locator(".col-time").bounding_box()
    assert box["x"] + box["width"] <= PHONE["width"]
    shot(page, f"{name}-phone.png")


def test_runs_filters_fold_away_on_a_phone_and_stay_open_on_a_desktop(browser, live_server, content):
    phone = signed_in(browser, live_server, viewport=PHONE)
    phone.goto(f"{live_server.url}/runs/")
    assert phone.is_visible("#f-q") and not phone.is_visible("#f-status")
    # The list starts on the first screen, not below a dozen fields.
    assert phone.locator("tbody tr").first.bounding_box()["y"] < PHONE["height"]
    phone.click("#toggle-filters")
    phone.wait_for_selector("#f-status", state="visible")
    shot(phone, "runs-phone-filters.png")
    # Filtered, the fields come back open, so the user sees what narrows the list.
    phone.goto(f"{live_server.url}/runs/?status=failed")
    assert phone.is_visible("#f-status") and "(on)" in phone.inner_text("#toggle-filters")

    desktop = signed_in(browser, live_server)
    desktop.goto(f"{live_server.url}/runs/")
    assert not desktop.is_visible("#toggle-filters")
    for field in ("#f-q", "#f-tag", "#f-status", "#f-ordering", "#f-columns", "#apply-filters"):
        assert desktop.is_visible(field), field
    # The fields still share rows as before: search, tag, pipeline, version and kind on the first.
    assert desktop.locator("#f-q").bounding_box()["y"] == desktop.locator("#f-kind").bounding_box()["y"]


def test_pipelines_list_on_a_phone(browser, live_server, content):
    page = signed_in(browser, live_server, viewport=PHONE)
    page.goto(f"{live_server.url}/pipelines/")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.locator(".pipeline-card").first.get_by_text("updated").is_visible()
    shot(page, "pipelines-phone.png")


def test_result_table_page_size_and_jump_to_page(browser, live_server, content):
    page = signed_in(browser, live_server)
    url = f"{live_server.url}/runs/{content['run'].pk}/"
    page.goto(url)
    assert page.locator("#result-table tbody tr").count() == 50
    # Waited for with locators: wait_for_function would evaluate a string, which the CSP forbids.
    expect = pytest.importorskip("playwright.sync_api").expect
    page.select_option("#table-page-size", "25")
    expect(page.locator("#result-table tbody tr")).to_have_count(25)
    page.fill("#table-page", "3")
    page.click("#result-table .table-controls button[type=submit]")  # "Go", not the search box's button
    expect(page.locator("#result-table tbody td").first).to_have_text("50")
    assert page.url == f"{url}?page=3&page_size=25"
    assert page.input_value("#table-page") == "3"
    shot(page, "run-table-pages.png")


def test_dataset_page_shows_its_shape_and_column_statistics(browser, live_server, content):
    page = signed_in(browser, live_server)
    page.goto(f"{live_server.url}/datasets/{content['dataset'].pk}/")
    assert page.inner_text("#dataset-shape") == "4 rows · 3 columns"
    row = page.locator("#dataset-stats tbody tr", has_text="sepal_width")
    assert row.locator("td").all_inner_texts() == ["number", "1", "3", "2.7", "3.5", "3.1667"]
    assert page.inner_text("#dataset-stats-scope") == "Computed over all 4 rows."
    shot(page, "dataset-stats.png")


def test_a_wide_result_table_on_a_phone_scrolls_inside_its_box_with_its_first_column_kept(
    browser, live_server, content
):
    from mlopen.runs import results
    from mlopen.runs.models import Run

    wide = Run.objects.get(pk=content["run"].pk)
    columns = ["customer", "region", "segment", "revenue 2024", "revenue 2025", "growth", "churn risk", "orders"]
    data = [[f"C-{1000 + i}", "north", "enterprise", 12000 + i, 13100 + i, 0.05, "low", i] for i in range(30)]
    folder, rows = results.store_result(
        wide.pk, {"columns": columns, "data": data, "graphs": [], "text": None, "warnings": []}, []
    )
    Run.objects.filter(pk=wide.pk).update(result_folder=folder, result_rows=rows)

    page = signed_in(browser, live_server, viewport=PHONE)
    page.goto(f"{live_server.url}/runs/{wide.pk}/")
    frame = page.locator("[data-table-frame]")
    box = page.locator("#result-table .table-responsive")
    # The page itself never scrolls sideways: the table does, inside its box, which says so.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert box.evaluate("el => el.scrollWidth > el.clientWidth")
    assert frame.get_attribute("class").split() == ["table-frame", "overflows", "more-right"]
    first_cell = page.locator("#result-table tbody tr").first.locator("td").first
    third_cell = page.locator("#result-table tbody tr").first.locator("td").nth(2)
    left_before, third_before = first_cell.bounding_box()["x"], third_cell.bounding_box()["x"]
    box.evaluate("el => { el.scrollLeft = 200; el.dispatchEvent(new Event('scroll')); }")
    expect = pytest.importorskip("playwright.sync_api").expect
    expect(frame).to_have_class("table-frame overflows more-right more-left")
    assert first_cell.bounding_box()["x"] == left_before  # the first column stays
    assert third_cell.bounding_box()["x"] < third_before  # the others moved
    box.evaluate("el => { el.scrollLeft = el.scrollWidth; el.dispatchEvent(new Event('scroll')); }")
    expect(frame).to_have_class("table-frame overflows more-left")
    box.evaluate("el => { el.scrollLeft = 0; el.dispatchEvent(new Event('scroll')); }")
    expect(frame).to_have_class("table-frame overflows more-right")
    edge = "el => getComputedStyle(el).boxShadow.includes('-1px')"  # the rule at the kept column's edge
    assert first_cell.evaluate(edge)
    # Sorted through htmx, the new table is watched as well.
    page.locator("#result-table thead th").nth(3).locator("a").click()
    expect(page.locator("#result-table thead th").nth(3)).to_have_attribute("aria-sort", "ascending")
    expect(page.locator("[data-table-frame]")).to_have_class("table-frame overflows more-right")
    page.locator("#result-table").scroll_into_view_if_needed()
    page.locator("#result-table").screenshot(path=str(SHOTS / "run-table-phone.png"))
    # Wide enough for every column: nothing scrolls, so no shade and no rule at the first column.
    page.set_viewport_size({"width": 1600, "height": 900})
    page.evaluate("window.dispatchEvent(new Event('resize'))")
    expect(page.locator("[data-table-frame]")).to_have_class("table-frame")
    assert not page.locator("#result-table tbody tr").first.locator("td").first.evaluate(edge)
