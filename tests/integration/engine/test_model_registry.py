"""The model registry on a real worker: trainings store how they were trained (input hash, table
schema, params, metrics, packages); promoting a model to production makes new runs use it, rolling
back moves them back; a run that names a model keeps it; a run whose input lacks a trained column
still runs, with its warning; warm processes follow the model actually used."""

from __future__ import annotations

import hashlib

import pytest

from mlopen.pipelines.models import TrainedModel

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

SCORER = """
import pandas as pd
from mlopenapp.utils import io_handler as io

def get_params(run=True):
    if run:
        return {}
    return {"weight": ("integer", {"default": 1})}

def train(inpt, params=None):
    frame = pd.read_csv(inpt.path if hasattr(inpt, "path") else inpt)
    io.log_metric("rows", len(frame))
    io.log_metric("weight", params["weight"])
    io.save_pipeline([(params["weight"], "weight")], [(list(frame.columns), "columns")], "scorer")

def run_pipeline(input, model, args, params=None):
    frame = pd.read_csv(input.path if hasattr(input, "path") else input)
    print("weight", model, flush=True)
    return {"columns": ["weight", "rows"], "data": [[model, len(frame)]]}
"""

TRAIN_CSV = b"height,width,label\n1.5,2,a\n2.5,3,b\n3.5,4,a\n"


@pytest.fixture
def scorer(pipeline_from, upload_dataset, submit, wait_for_run, module_worker, api):
    """The scorer pipeline trained twice (weights 2 then 5) on the same table."""
    pipeline = pipeline_from("scorer", SCORER)
    data = upload_dataset("train.csv", TRAIN_CSV)
    trainings = []
    for weight in (2, 5):
        run = submit("scorer", kind="train", input=data["id"], params={"weight": weight})
        assert wait_for_run(run["id"], timeout=90).status == "succeeded", module_worker.log_text()[-3000:]
        trainings.append(run["id"])
    models = list(TrainedModel.objects.filter(pipeline_id=pipeline["id"]).order_by("number"))
    return {"pipeline": pipeline, "data": data, "models": models, "trainings": trainings}


def _weight_used(api, submit, wait_for_run, **fields) -> tuple[int, dict]:
    run = submit("scorer", **fields)
    assert wait_for_run(run["id"], timeout=90).status == "succeeded"
    body = api.get(f"/api/v1/runs/{run['id']}/").json()
    return body["result"]["data"][0][0], body


def test_a_trained_model_records_its_input_hash_schema_params_metrics_and_packages(scorer, api):
    first = scorer["models"][0]
    body = api.get(f"/api/v1/pipelines/{scorer['pipeline']['id']}/models/{first.pk}/").json()

    assert body["run"] == scorer["trainings"][0]
    training = body["training"]
    assert training["input_name"] == "train.csv"
    assert training["input_sha256"] == hashlib.sha256(TRAIN_CSV).hexdigest()
    assert training["input_schema"] == {
        "columns": [
            {"name": "height", "type": "float"},
            {"name": "width", "type": "integer"},
            {"name": "label", "type": "string"},
        ],
        "rows": 3,
        "rows_estimated": False,
    }
    assert training["params"] == {"weight": 2}
    assert training["metrics"] == {"rows": 3.0, "weight": 2.0}
    assert "pandas" in training["environment"]["packages"]


def test_promoting_a_model_to_production_makes_new_runs_use_it_and_rolling_back_moves_them_back(
    scorer, api, submit, wait_for_run
):
    first, second = scorer["models"]
    data = scorer["data"]["id"]
    models_url = f"/api/v1/pipelines/{scorer['pipeline']['id']}/models"

    newest, _ = _weight_used(api, submit, wait_for_run, input=data)
    assert api.patch(f"{models_url}/{first.pk}/", {"aliases": ["production"]}, format="json").status_code == 200
    promoted, promoted_body = _weight_used(api, submit, wait_for_run, input=data)
    assert api.patch(f"{models_url}/{second.pk}/", {"aliases": ["production"]}, format="json").status_code == 200
    moved, _ = _weight_used(api, submit, wait_for_run, input=data)
    assert api.patch(f"{models_url}/{first.pk}/", {"aliases": ["production"]}, format="json").status_code == 200
    rolled_back, rolled_back_body = _weight_used(api, submit, wait_for_run, input=data)
    named, named_body = _weight_used(api, submit, wait_for_run, input=data, model=second.pk)

    # Each run printed the weight of the model it was given: the newest, then production's.
    assert (newest, promoted, moved, rolled_back, named) == (5, 2, 5, 2, 5)
    assert (promoted_body["trained_model"], promoted_body["model_alias"]) == (first.pk, "production")
    assert rolled_back_body["trained_model"] == first.pk
    assert named_body["trained_model"] == second.pk
    # The warm process that served production's model is not reused for another model.
    assert "weight 5" in named_body_log(api, named_body["id"])
    lineage = api.get(f"{models_url}/{first.pk}/runs/").json()
    assert {run["id"] for run in lineage["results"]} == {promoted_body["id"], rolled_back_body["id"]}


def named_body_log(api, run_id: int) -> str:
    return api.get(f"/api/v1/runs/{run_id}/logs/").content.decode()


def test_a_run_whose_input_lacks_a_trained_column_still_runs_with_a_warning(
    scorer, api, submit, wait_for_run, upload_dataset
):
    lacking = upload_dataset("lacking.csv", b"height,label\n1.0,a\n")

    weight, body = _weight_used(api, submit, wait_for_run, input=lacking["id"])

    assert (weight, body["status"]) == (5, "succeeded")
    assert [(w["kind"], w["column"]) for w in body["warnings"]] == [("missing_column", "width")]
