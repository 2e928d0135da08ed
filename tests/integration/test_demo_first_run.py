"""A newcomer's first Start on each demo pipeline: the form starts from the demo's example, and only
the sentiment pipeline (which saves a model) asks to be trained first."""

from __future__ import annotations

import pytest
from django.test import Client

from mlopen.cli.bootstrap import load_demo
from mlopen.datasets.models import Dataset
from mlopen.pipelines.models import Pipeline

pytestmark = pytest.mark.django_db


def test_demo_pipelines_start_from_their_examples_and_only_sentiment_needs_training(admin_user, user):
    load_demo(stdout=lambda message: None)
    demo = {p.name: p for p in Pipeline.objects.filter(is_demo=True)}
    datasets = {d.filename: d.pk for d in Dataset.objects.filter(is_demo=True)}
    assert all(pipeline.input_required for pipeline in demo.values())
    assert {name: p.latest_version.saves_model for name, p in demo.items()} == {
        "data_explorer": False,
        "iris_knn": False,
        "sentiment": True,
    }
    newcomer = Client()
    newcomer.force_login(user)

    def form(name, kind):
        return newcomer.get(f"/runs/new/?pipeline={demo[name].pk}&kind={kind}").content.decode()

    for name, kind, example in (
        ("data_explorer", "run", "housing.csv"),
        ("iris_knn", "run", "iris.csv"),
        ("sentiment", "train", "reviews_train.csv"),
        ("sentiment", "run", "reviews_new.txt"),
    ):
        page = form(name, kind)
        assert f'<option value="{datasets[example]}" selected>{example}' in page, (name, kind)
        bar = page[page.index('id="start-bar"') :]
        start_disabled = "disabled" in bar[bar.index("<button") : bar.index("</button>")]
        assert start_disabled == (name == "sentiment" and kind == "run"), (name, kind)
    assert "Train it first" in form("sentiment", "run")
    assert "not trained yet" not in newcomer.get(f"/pipelines/{demo['iris_knn'].pk}/").content.decode()
