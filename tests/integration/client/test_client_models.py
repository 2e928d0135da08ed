"""`mlopen model list | show | alias | download`, `mlopen run --model --version` and
`mlopen runs rerun --param` against a live server (no worker: the runs stay queued)."""

from __future__ import annotations

import pickle

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def registry(author):
    from mlopen.core import storage
    from mlopen.pipelines.models import Pipeline, PipelineVersion, TrainedModel

    pipeline = Pipeline.objects.create(name="iris", created_by=author)
    versions = [
        PipelineVersion.objects.create(
            pipeline=pipeline,
            number=n,
            control_filename="iris.py",
            folder=f"pipelines/{pipeline.pk}/v{n}",
            params_run=[{"name": "k", "type": "integer", "default": 1}, {"name": "label", "type": "string"}],
        )
        for n in (1, 2)
    ]
    models = []
    for n in (1, 2):
        artifact = f"models/{pipeline.pk}/{n}.pkl"
        storage.write_stream(artifact, [pickle.dumps({"models": {"w": n}})])
        models.append(
            TrainedModel.objects.create(
                pipeline=pipeline, version=versions[n - 1], number=n, artifact=artifact, size=30, train_params={"k": n}
            )
        )
    return pipeline, models


def test_list_alias_show_and_download_models(server, mlopen, registry, tmp_path):
    pipeline, (first, second) = registry

    promoted = mlopen("model", "alias", "iris", first.pk, "production", "--json")
    listing = mlopen("model", "list", "iris")
    shown = mlopen("model", "show", str(pipeline.pk), first.pk)
    saved = mlopen("model", "download", "iris", first.pk, "-o", tmp_path / "m.pkl")
    bad = mlopen("model", "alias", "iris", first.pk, "Not A Slug")

    assert promoted.code == 0 and promoted.json["aliases"] == ["production"]
    assert listing.code == 0 and "production" in listing.out and "#2" in listing.out
    assert "iris model #1" in shown.out and "aliases: production" in shown.out and "k=1" in shown.out
    assert saved.code == 0 and pickle.loads((tmp_path / "m.pkl").read_bytes()) == {"models": {"w": 1}}
    assert bad.code == 1 and "is not a slug" in bad.err


def test_run_with_a_model_and_version_then_rerun_with_a_changed_parameter(server, mlopen, registry):
    _pipeline, (first, _second) = registry

    started = mlopen(
        "run", "iris", "--model", first.pk, "--version", "1", "--param", "k=4", "--param", "label=x", "--json"
    )
    rerun = mlopen("runs", "rerun", started.json["id"], "--param", "k=9", "--json")
    wrong = mlopen("run", "iris", "--version", "7")

    assert started.code == 0, started.err
    assert (started.json["trained_model"], started.json["version"]) == (first.pk, 1)
    assert rerun.code == 0, rerun.err
    assert (rerun.json["trained_model"], rerun.json["version"], rerun.json["params"]) == (
        first.pk,
        1,
        {"k": 9, "label": "x"},
    )
    assert wrong.code == 1 and "has no version '7'" in wrong.err
