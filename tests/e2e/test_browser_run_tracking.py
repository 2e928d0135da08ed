"""A real browser and a real worker: name and tag runs on their pages, find them in the runs list by
text and tag (with parameter and metric columns, sorted by a metric), tick three and compare them
with their metrics overlaid, then delete one. Screenshots land in docs/screenshots/.
"""

from __future__ import annotations

import re

import pytest
from test_browser_flow import browser_page, shot  # noqa: F401 - the fixture is used by name

from mlopen.runs.models import Run

pytestmark = [pytest.mark.browser, pytest.mark.engine]


def sign_in(page, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "ada-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def label(page, base: str, run_id: int, name: str, tags: str, notes: str) -> None:
    page.goto(f"{base}/runs/{run_id}/")
    page.click("#edit-labels")  # htmx swaps the panel for its form
    page.fill("#label-name", name)
    page.fill("#label-tags", tags)
    page.fill("#label-notes", notes)
    page.click("#save-labels")
    page.wait_for_selector(f"#run-name:has-text('{name}')")


def test_browser_tags_finds_and_compares_runs(
    live_server,
    author,
    worker,
    upload_pipeline,
    api_for,
    wait_for_run,
    browser_page,  # noqa: F811 - the fixture imported above
):
    page = browser_page
    base = live_server.url
    upload_pipeline("track_sweep.py")
    ada = api_for(author)
    ids = []
    for lr in (0.05, 0.1, 0.3, 0.2):
        response = ada.post("/api/v1/runs/", {"pipeline": "track_sweep", "params": {"lr": lr}}, format="json")
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
    for run_id in ids:
        assert wait_for_run(run_id).status == Run.Status.SUCCEEDED

    sign_in(page, base)
    slow, base_run, fast, control = ids
    label(page, base, slow, "lr 0.05 slow", "sweep, lr-low", "Learning rate **0.05**: too slow.")
    assert page.inner_text("#run-notes strong") == "0.05"
    label(page, base, base_run, "lr 0.1 baseline", "sweep", "The *baseline*.")
    label(page, base, fast, "lr 0.3 fast", "sweep, best", "Fastest so far.")
    label(page, base, control, "control", "", "Not part of the sweep.")
    shot(page, "run-labels.png")

    # Find them: free text, then a tag, with columns, sorted by the last accuracy.
    page.goto(f"{base}/runs/")
    page.fill("#f-q", "lr 0.")
    page.click("#apply-filters")
    page.wait_for_url(re.compile(r".*q=lr\+0\..*"))
    assert page.locator("tbody tr").count() == 3
    page.fill("#f-q", "")
    page.fill("#f-tag", "sweep")
    page.fill("#f-columns", "param.lr, metric.accuracy, metric.loss")
    page.click("#apply-filters")
    page.wait_for_selector("th.column-metric")
    page.select_option("#f-ordering", "-metric.accuracy")
    page.click("#apply-filters")
    page.wait_for_url(re.compile(r".*ordering=-metric.accuracy.*"))
    names = page.locator("tbody .run-name").all_inner_texts()
    assert names == ["lr 0.3 fast", "lr 0.1 baseline", "lr 0.05 slow"]
    assert "tag=sweep" in page.url  # the filters live in the address, to share or come back to
    shot(page, "runs-list-filters.png")

    # Tick all three and compare them.
    page.check("input[data-select-all]")
    page.click("#compare-selected")
    page.wait_for_url(re.compile(r".*/runs/compare/\?ids=\d+,\d+,\d+$"))
    page.wait_for_selector("#compare-charts .metric-chart svg.main-svg")
    charts = page.locator("#compare-charts .metric-chart")
    assert charts.count() == 2  # accuracy and loss
    for index in range(2):
        assert charts.nth(index).locator(".scatterlayer .trace").count() == 3  # a line per run
    assert page.locator("#compare-params tr.param-differs th").all_inner_texts() == ["lr differs"]
    assert page.locator("#compare-results .compare-result").count() == 3
    shot(page, "runs-compare.png")

    # Delete the control run from the list: a confirmation first, then it is gone.
    page.goto(f"{base}/runs/?q=control")
    page.check(f"input[name=ids][value='{control}']")
    page.click("#delete-selected")
    page.wait_for_selector("#runs-to-delete")
    page.click("#confirm-delete")
    page.wait_for_selector(".alert:has-text('Deleted 1 run')")
    assert not Run.objects.filter(pk=control).exists()
    assert page.csp_violations == []
