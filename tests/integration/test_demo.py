"""The demo pipelines and datasets that `mlopen serve` registers on first start, run end to end."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

DEMO_PIPELINES = {"data_explorer", "iris_knn", "sentiment"}
DEMO_DATASETS = {"housing.csv", "iris.csv", "reviews_new.txt", "reviews_train.csv"}


def test_demo_pipelines_and_datasets_are_registered_once_and_work_out_of_the_box(api, worker, wait_for_run):
    from mlopen.cli.bootstrap import load_demo
    from mlopen.datasets.models import Dataset
    from mlopen.pipelines.models import Pipeline

    messages: list[str] = []
    load_demo(stdout=messages.append)
    first_start = list(messages)
    load_demo(stdout=messages.append)

    assert messages == first_start, "a second start registers nothing again"
    assert not [m for m in messages if "refused" in m]
    assert set(Pipeline.objects.filter(is_demo=True).values_list("name", flat=True)) == DEMO_PIPELINES
    assert Pipeline.objects.get(name="iris_knn").description.startswith("Classifies flowers")
    datasets = {d.filename: d.pk for d in Dataset.objects.filter(is_demo=True)}
    assert set(datasets) == DEMO_DATASETS

    def submit(pipeline, kind="run", input=None, params=None):
        response = api.post(
            "/api/v1/runs/",
            {"pipeline": pipeline, "kind": kind, "input": datasets.get(input), "params": params or {}},
            format="json",
        )
        assert response.status_code == 201, response.content
        return response.json()["id"]

    def finished(run_id, status="succeeded"):
        run = wait_for_run(run_id, timeout=90)
        assert run.status == status, f"{run.error}\n{run.log[-3000:]}"
        return api.get(f"/api/v1/runs/{run_id}/").json()

    untrained = submit("sentiment", input="reviews_new.txt")
    knn = submit("iris_knn", input="iris.csv")
    explore = submit("data_explorer", input="housing.csv", params={"chart": "box", "title": "Houses"})
    train = submit("sentiment", kind="train", input="reviews_train.csv", params={"epochs": 8})

    assert "has not been trained yet" in finished(untrained, "failed")["error"]

    knn_result = finished(knn)["result"]
    assert knn_result["columns"] == ["sample", "true species", "predicted", "correct"]
    assert knn_result["rows"] == 45
    assert [row[3] for row in knn_result["data"]].count("yes") >= 38
    assert [g["kind"] for g in knn_result["graphs"]] == ["figure", "figure"]
    assert "<b>Accuracy:" in knn_result["text"]

    explore_result = finished(explore)["result"]
    assert explore_result["data"] is None
    assert [g["kind"] for g in explore_result["graphs"]] == ["figure"] * 3
    assert [t["type"] for t in explore_result["graphs"][0]["figure"]["data"]] == ["box"] * 5

    trained = finished(train)
    losses = [point["value"] for point in trained["metrics"]["loss"]]
    assert len(losses) == 8
    assert losses[-1] < losses[0]
    assert trained["progress"]["fraction"] == 1.0

    labelled = finished(submit("sentiment", input="reviews_new.txt"))["result"]
    assert labelled["columns"] == ["text", "sentiment", "confidence"]
    assert labelled["rows"] == 30
    assert {row[1] for row in labelled["data"]} == {"positive", "negative"}
    assert all(0.5 <= row[2] <= 1 for row in labelled["data"])
