"""A first run that cannot go wrong: the run form starts from the dataset that fits, Start says why it
cannot be pressed, and a pipeline that needs no model is not called untrained."""

from __future__ import annotations

import pytest

from mlopen.datasets.models import Dataset
from mlopen.datasets.services import store_dataset
from mlopen.pipelines.models import PipelineVersion, TrainedModel
from mlopen.runs import first_run
from mlopen.runs.models import PipelineExample, Run

pytestmark = pytest.mark.django_db


def dataset_of(owner, name="data.csv", **fields):
    dataset = store_dataset(owner=owner, name=name, filename=name, chunks=[b"a,b\n1,2\n"])
    if fields:
        Dataset.objects.filter(pk=dataset.pk).update(**fields)
        dataset.refresh_from_db()
    return dataset


def saving(pipeline, saves_model):
    PipelineVersion.objects.filter(pipeline=pipeline).update(saves_model=saves_model)
    return pipeline


def start_button(page: str) -> str:
    at = page.index('id="start-bar"')
    button = page.index("<button", at)
    return page[button : page.index(">", button) + 1]


# --- the dataset the form starts from ----------------------------------------------------------------


def test_run_form_preselects_the_dataset_last_used_with_this_pipeline_and_kind(
    alice_client, user, make_pipeline, make_run
):
    pipeline = make_pipeline("scorer")
    older, last, trained_on = dataset_of(user, "older.csv"), dataset_of(user, "last.csv"), dataset_of(user, "t.csv")
    make_run(user, pipeline, input=older)
    make_run(user, pipeline, input=last)
    make_run(user, pipeline, kind="train", input=trained_on)
    page = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=run").content.decode()
    assert f'<option value="{last.pk}" selected>last.csv' in page
    page = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=train").content.decode()
    assert f'<option value="{trained_on.pk}" selected>t.csv' in page


def test_run_form_does_not_preselect_what_someone_else_last_used(client_for, user, outsider, make_pipeline, make_run):
    pipeline = make_pipeline("scorer")
    make_run(user, pipeline, input=dataset_of(user, "alices.csv"))
    page = client_for(outsider).get(f"/runs/new/?pipeline={pipeline.pk}").content.decode()
    assert '<option value="" selected>No input file</option>' in page


def test_run_form_preselects_the_pipelines_example_until_the_user_ran_it(
    alice_client, user, admin_user, make_pipeline, make_run
):
    pipeline = make_pipeline("scorer")
    example = dataset_of(admin_user, "example.csv", is_demo=True)
    first_run.set_example(admin_user, pipeline, "run", example.pk)
    page = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=run").content.decode()
    assert f'<option value="{example.pk}" selected>example.csv' in page
    mine = dataset_of(user, "mine.csv")
    make_run(user, pipeline, input=mine)
    page = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=run").content.decode()
    assert f'<option value="{mine.pk}" selected>mine.csv' in page


def test_changing_the_pipeline_sends_its_preselected_input_and_start_out_of_band(
    alice_client, user, make_pipeline, make_run
):
    pipeline = make_pipeline("scorer")
    last = dataset_of(user, "last.csv")
    make_run(user, pipeline, input=last)
    page = alice_client.get(f"/runs/new/params/?pipeline={pipeline.pk}&kind=run", HTTP_HX_REQUEST="true").content
    page = page.decode()
    assert 'id="input-card" hx-swap-oob="true"' in page and 'id="start-bar" hx-swap-oob="true"' in page
    assert f'<option value="{last.pk}" selected>last.csv' in page


def test_try_it_with_the_example_links_the_run_form_with_the_example(alice_client, admin_user, make_pipeline):
    pipeline = saving(make_pipeline("explorer"), False)
    example = dataset_of(admin_user, "iris.csv", is_demo=True)
    first_run.set_example(admin_user, pipeline, "run", example.pk)
    page = alice_client.get(f"/pipelines/{pipeline.pk}/").content.decode()
    assert "Try it with the example" in page
    assert f"/runs/new/?pipeline={pipeline.pk}&amp;kind=run&amp;input={example.pk}" in page


def test_an_untrained_pipeline_is_tried_by_training_on_its_example(alice_client, admin_user, make_pipeline):
    pipeline = saving(make_pipeline("sentiment"), True)
    train = dataset_of(admin_user, "reviews_train.csv", is_demo=True)
    first_run.set_example(admin_user, pipeline, "train", train.pk)
    first_run.set_example(admin_user, pipeline, "run", dataset_of(admin_user, "reviews_new.txt", is_demo=True).pk)
    page = alice_client.get(f"/pipelines/{pipeline.pk}/").content.decode()
    assert f"/runs/new/?pipeline={pipeline.pk}&amp;kind=train&amp;input={train.pk}" in page


def test_whoever_may_publish_sets_the_input_required_and_the_examples_on_the_pipeline_page(
    client_for, admin_user, author, user, make_pipeline
):
    pipeline = make_pipeline("scorer")
    pipeline.created_by = author
    pipeline.save()
    example = dataset_of(author, "example.csv")
    page = client_for(author).get(f"/pipelines/{pipeline.pk}/").content.decode()
    assert 'id="first-run"' in page
    response = client_for(author).post(
        f"/pipelines/{pipeline.pk}/first-run/", {"input_required": "on", "run_example": example.pk}
    )
    assert response.status_code == 302
    pipeline.refresh_from_db()
    assert pipeline.input_required is True
    assert PipelineExample.objects.get(pipeline=pipeline).dataset == example
    assert 'id="first-run"' not in client_for(user).get(f"/pipelines/{pipeline.pk}/").content.decode()
    assert client_for(user).post(f"/pipelines/{pipeline.pk}/first-run/", {}).status_code == 403


# --- Start, and why it cannot be pressed ------------------------------------------------------------


def test_start_is_disabled_with_train_it_first_when_the_run_needs_a_model_that_is_missing(alice_client, make_pipeline):
    pipeline = saving(make_pipeline("sentiment"), True)
    page = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=run").content.decode()
    assert "disabled" in start_button(page)
    assert "Start is disabled: This pipeline needs a trained model and has none yet: train it first." in page
    assert f'href="/runs/new/?pipeline={pipeline.pk}&amp;kind=train">Train it first</a>' in page
    page = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=train").content.decode()
    assert "disabled" not in start_button(page)


def test_start_is_enabled_once_the_pipeline_has_a_trained_model(alice_client, make_pipeline):
    pipeline = saving(make_pipeline("sentiment"), True)
    TrainedModel.objects.create(pipeline=pipeline, version=pipeline.latest_version, number=1, artifact="m")
    page = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=run").content.decode()
    assert "disabled" not in start_button(page) and "Uses model #1" in page


def test_start_waits_for_an_input_the_pipeline_requires(alice_client, make_pipeline):
    pipeline = make_pipeline("scorer")
    pipeline.input_required = True
    pipeline.save()
    page = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=run").content.decode()
    assert "data-needs-input disabled" in start_button(page)
    assert "Start is disabled: scorer needs an input dataset; choose one or upload a file." in page
    assert '<option value="" selected>Choose a dataset…</option>' in page


def test_start_is_enabled_when_the_required_input_is_preselected(alice_client, user, make_pipeline, make_run):
    pipeline = make_pipeline("scorer")
    pipeline.input_required = True
    pipeline.save()
    make_run(user, pipeline, input=dataset_of(user))
    page = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=run").content.decode()
    assert start_button(page).endswith("data-needs-input>")
    assert "data-input-reason hidden" in page


def test_start_with_no_input_is_enabled_when_the_input_is_optional(alice_client, make_pipeline):
    pipeline = make_pipeline("scorer")
    page = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=run").content.decode()
    assert "disabled" not in start_button(page) and "data-needs-input" not in page
    assert "No input file" in page


def test_a_run_without_a_required_input_is_refused_with_what_to_fix(alice_client, make_pipeline):
    pipeline = make_pipeline("scorer")
    pipeline.input_required = True
    pipeline.save()
    response = alice_client.post("/runs/new/", {"pipeline": pipeline.pk, "kind": "run", "input": ""})
    assert response.status_code == 400
    message = "scorer needs an input dataset: choose one of your datasets or upload a file."
    assert response.context["form"].errors["input"] == [message]
    assert message in response.content.decode()
    assert not Run.objects.exists()


# --- "not trained yet" only where a model is needed ------------------------------------------------


def test_a_pipeline_that_saves_no_model_is_not_called_untrained(alice_client, make_pipeline):
    pipeline = saving(make_pipeline("explorer"), False)
    run_form = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=run").content.decode()
    assert "Not trained yet" not in run_form and "Runs without a trained model: it needs none." in run_form
    detail = alice_client.get(f"/pipelines/{pipeline.pk}/").content.decode()
    assert "not trained yet" not in detail and "needs no training" in detail
    listing = alice_client.get("/pipelines/").content.decode()
    assert "not trained yet" not in listing and "needs no training" in listing


def test_a_pipeline_that_saves_a_model_and_has_none_says_train_it_first(alice_client, make_pipeline):
    pipeline = saving(make_pipeline("sentiment"), True)
    run_form = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=run").content.decode()
    assert "Not trained yet: its runs need a trained model." in run_form
    assert "not trained yet: train it first" in alice_client.get(f"/pipelines/{pipeline.pk}/").content.decode()
    assert "not trained yet" in alice_client.get("/pipelines/").content.decode()


def test_a_pipeline_whose_need_is_not_known_may_not_need_a_model(alice_client, make_pipeline):
    pipeline = make_pipeline("older")  # stored before its sources were read: saves_model is empty
    run_form = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=run").content.decode()
    assert "No trained model yet; this pipeline may not need one." in run_form
    assert "disabled" not in start_button(run_form)
    detail = alice_client.get(f"/pipelines/{pipeline.pk}/").content.decode()
    assert "no trained model yet; it may not need one" in detail
