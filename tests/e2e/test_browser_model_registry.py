"""A real browser and a real worker: promote a trained model to production on its page, see new
runs use it, roll back from the alias history, and see the run form warn (before the run starts)
that the chosen input lacks a column the model was trained on.

Screenshots land in docs/screenshots/ (model-registry.png, schema-warning.png).
"""

from __future__ import annotations

import re

import pytest
from test_browser_flow import browser_page, shot  # noqa: F401 - browser_page is a fixture

from mlopen.pipelines.models import ModelAlias, TrainedModel

pytestmark = [pytest.mark.browser, pytest.mark.engine]

SCORER = """
import pandas as pd
from mlopenapp.utils import io_handler as io

def get_params(run=True):
    return {} if run else {"weight": ("integer", {"default": 1})}

def train(inpt, params=None):
    frame = pd.read_csv(inpt.path if hasattr(inpt, "path") else inpt)
    io.log_metric("accuracy", 0.8 + params["weight"] / 100)
    io.save_pipeline([(params["weight"], "weight")], [(list(frame.columns), "columns")], "scorer")

def run_pipeline(input, model, args, params=None):
    frame = pd.read_csv(input.path if hasattr(input, "path") else input)
    return {"columns": ["weight", "rows"], "data": [[model, len(frame)]]}
"""


def test_browser_promote_roll_back_and_schema_warning(
    live_server,
    author,
    worker,
    upload_pipeline,
    upload_dataset,
    api_for,
    browser_page,  # noqa: F811 - the fixture imported above
    wait_for_run,
):
    page = browser_page
    base = live_server.url
    ada = api_for(author)
    pipeline = upload_pipeline("scorer.py", source=SCORER, client=ada)
    train_data = upload_dataset("flowers.csv", b"sepal,petal,label\n1.5,2.5,a\n2.5,3.5,b\n", client=ada)
    upload_dataset("no-petal.csv", b"sepal,label\n1.5,a\n", client=ada)
    for weight in (2, 5):
        run = ada.post(
            "/api/v1/runs/",
            {"pipeline": pipeline["id"], "kind": "train", "input": train_data["id"], "params": {"weight": weight}},
            format="json",
        ).json()
        assert wait_for_run(run["id"], timeout=90).status == "succeeded"
    first, second = TrainedModel.objects.filter(pipeline_id=pipeline["id"]).order_by("number")

    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "ada-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")

    # The pipeline page links each model; model #2 is current (the newest).
    page.goto(f"{base}/pipelines/{pipeline['id']}/")
    page.click("a:has-text('#1')")
    page.wait_for_url(re.compile(rf".*/models/{first.pk}/$"))
    assert "flowers.csv" in page.inner_text("main")

    # Promote model #1: it becomes current, and a new run uses it.
    page.click("#promote")
    page.wait_for_selector("#model-aliases .alias-badge:has-text('production')")
    assert ModelAlias.objects.get(name="production").model == first
    # Then model #2, and roll back to #1 from the history.
    page.goto(f"{base}/pipelines/{pipeline['id']}/models/{second.pk}/")
    page.click("#promote")
    page.wait_for_selector("#model-aliases .alias-badge:has-text('production')")
    page.click("button.rollback:has-text('Roll back production to #1')")
    page.wait_for_url(re.compile(rf".*/models/{first.pk}/$"))
    page.wait_for_selector("#model-aliases .alias-badge:has-text('production')")
    assert ModelAlias.objects.get(name="production").model == first
    assert page.locator("#alias-history li").count() == 3
    assert "Roll back production to #2" in page.inner_text("#alias-history")

    # The run form: an input without the trained column 'petal' is warned about before it starts.
    page.goto(f"{base}/runs/new/?pipeline={pipeline['id']}&kind=run")
    assert "Default: production (model #1)" in page.inner_text("#id_model")
    page.locator("#id_input").select_option(
        label=page.locator("#id_input option", has_text="no-petal.csv").first.inner_text()
    )
    page.wait_for_selector("#schema-warning")
    assert "'petal' (float) that the model was trained on is missing" in page.inner_text("#schema-warning")
    shot(page, "schema-warning.png")
    page.click("#run-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/runs/\d+/$"))
    page.wait_for_selector('#run-status[data-run-status="succeeded"]', timeout=90_000)
    assert "missing" in page.inner_text("#run-warnings")
    assert "model #1" in page.inner_text("#run-model") and "production" in page.inner_text("#run-model")
    assert page.inner_text("#result-table tbody tr:first-child td:first-child") == "2"

    # The model's page lists the run that used it.
    page.goto(f"{base}/pipelines/{pipeline['id']}/models/{first.pk}/")
    assert page.locator("#model-runs tbody tr").count() == 1
    shot(page, "model-registry.png")
