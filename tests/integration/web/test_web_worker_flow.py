"""The pages driving a real worker: upload, train, run, watch live, cancel, and read a failure."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from web_pagecheck import inline_scripts, scan

from mlopen.datasets.models import Dataset
from mlopen.pipelines.models import Pipeline
from mlopen.runs.models import Run

pytestmark = pytest.mark.engine

PIPELINES = Path(__file__).resolve().parents[2] / "fixtures" / "pipelines"
CSV = b"name,value\nalpha,1\nbeta,2\ngamma,6\n"


def upload_through_page(client, control: str) -> Pipeline:
    path = PIPELINES / control
    response = client.post("/pipelines/upload/", {"control": SimpleUploadedFile(path.name, path.read_bytes())})
    assert response.status_code == 302, response.content.decode()[-3000:]
    return Pipeline.objects.get(name=path.stem)


def start_through_page(client, **data) -> Run:
    before = set(Run.objects.values_list("pk", flat=True))
    response = client.post("/runs/new/", data)
    assert response.status_code == 302, response.context and response.context["form"].errors
    return Run.objects.exclude(pk__in=before).get()


def test_train_then_run_shows_table_graphs_and_text(client_for, author, worker, wait_for_run):
    client = client_for(author)
    pipeline = upload_through_page(client, "web_legacy.py")
    assert client.post("/datasets/upload/", {"file": SimpleUploadedFile("values.csv", CSV)}).status_code == 302
    dataset = Dataset.objects.get(owner=author)

    train = start_through_page(client, pipeline=pipeline.pk, kind="train", input=dataset.pk)
    train = wait_for_run(train.pk, timeout=60)
    assert train.status == "succeeded", train.error
    page = client.get(f"/runs/{train.pk}/").content.decode()
    model = train.produced_model
    model_page = reverse("web:model-detail", args=[pipeline.pk, model.pk])
    assert f'Training saved <a href="{model_page}"><strong>model #1</strong></a>' in page
    assert "trained on 3 rows, mean value 3.00" in page
    assert 'id="metric-data-0"' in page  # the loss logged during training, drawn as a chart

    run = start_through_page(client, pipeline=pipeline.pk, kind="run", input=dataset.pk)
    run = wait_for_run(run.pk, timeout=60)
    assert run.status == "succeeded", run.error
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "<td>gamma</td><td>6.0</td><td>3.0</td>" in page
    assert "<b>Mean value</b> 3.00 over 3 training rows" in page
    assert "alert(" not in page and "onerror" not in page
    assert inline_scripts(page) == []
    figures = [s for s in scan(page).scripts if s["attrs"].get("id", "").startswith("graph-data-")]
    assert [s["attrs"]["id"] for s in figures] == ["graph-data-0", "graph-data-1"]  # dict + parsed plotly div
    assert [f["src"] for f in scan(page).iframes] == [f"/runs/{run.pk}/graphs/2/"]
    frame = client.get(f"/runs/{run.pk}/graphs/2/").content.decode()
    assert "drawn by the graph" in frame
    csv = client.get(f"/api/v1/runs/{run.pk}/download/?format=csv")
    assert b"".join(csv.streaming_content).decode().splitlines()[:2] == ["name,value,difference", "alpha,1.0,-2.0"]


def test_live_run_shows_progress_and_log_and_can_be_cancelled(client_for, author, worker, wait_for_run):
    client = client_for(author)
    pipeline = upload_through_page(client, "web_slow.py")
    run = start_through_page(client, pipeline=pipeline.pk, kind="run", **{"params.steps": "60", "params.pause": "0.25"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.progress_fraction and "step 2 of 60" in run.log:
            break
        time.sleep(0.2)
    assert "step 2 of 60" in run.log, (run.status, run.log, worker.log_text()[-2000:])
    panel = client.get(f"/runs/{run.pk}/status/", HTTP_HX_REQUEST="true")
    text = panel.content.decode()
    assert 'hx-trigger="every 1s"' in text and "HX-Refresh" not in panel
    assert "progress-bar" in text and "step 2 of 60" in text
    assert 'id="metric-data-0"' in text

    client.post(f"/runs/{run.pk}/cancel/")
    run = wait_for_run(run.pk, timeout=15)
    assert run.status == "cancelled"
    panel = client.get(f"/runs/{run.pk}/status/", HTTP_HX_REQUEST="true")
    assert panel["HX-Refresh"] == "true" and "hx-trigger" not in panel.content.decode()


def test_failed_run_page_puts_the_error_first(client_for, author, worker, wait_for_run):
    client = client_for(author)
    pipeline = upload_through_page(client, "web_fail.py")
    run = wait_for_run(start_through_page(client, pipeline=pipeline.pk, kind="run").pk, timeout=60)
    assert run.status == "failed"
    page = client.get(f"/runs/{run.pk}/").content.decode()
    error = page[page.index('id="run-error"') : page.index('id="run-status"')]
    assert "ValueError: the column &#x27;price&#x27; is missing from the input" in error
    assert "about to fail" in page
