"""`mlopen runs name | note | tag | list -q/--tag | compare | delete` against a live server (runs are
made directly: labelling, finding and comparing them needs no worker)."""

from __future__ import annotations

import io

import pytest
from django.utils import timezone

from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen.runs.models import Run, RunMetric

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def runs(author):
    pipeline = Pipeline.objects.create(name="iris", description="")
    version = PipelineVersion.objects.create(pipeline=pipeline, number=1, control_filename="iris.py", folder="x")
    now = timezone.now()
    made = []
    for k in (3, 5):
        run = Run.objects.create(
            pipeline=pipeline,
            version=version,
            kind="run",
            owner=author,
            status="succeeded",
            params={"k": k},
            started_at=now,
            finished_at=now,
        )
        RunMetric.objects.create(run=run, name="accuracy", step=1, value=k / 10)
        made.append(run)
    return made


def test_name_note_tag_then_find_by_text_and_tag(server, mlopen, runs, monkeypatch):
    first, second = runs
    named = mlopen("runs", "name", first.pk, "knn baseline")
    assert named.code == 0, named.err
    assert f"Run {first.pk}: knn baseline (no tags)." in named.out
    monkeypatch.setattr("sys.stdin", io.StringIO("# Notes\nk=3 is the **baseline**"))
    assert mlopen("runs", "note", first.pk, "-").code == 0
    assert Run.objects.get(pk=first.pk).notes == "# Notes\nk=3 is the **baseline**"
    tagged = mlopen("runs", "tag", first.pk, "sweep", "keep", "--json")
    assert tagged.json["tags"] == ["keep", "sweep"]
    assert mlopen("runs", "tag", second.pk, "sweep").code == 0
    assert mlopen("runs", "tag", first.pk, "keep", "--remove", "--json").json["tags"] == ["sweep"]

    found = mlopen("runs", "list", "-q", "baseline", "--json")
    assert [run["id"] for run in found.json["results"]] == [first.pk]
    tagged_runs = mlopen("runs", "list", "--tag", "sweep", "--columns", "param.k,metric.accuracy")
    assert tagged_runs.code == 0, tagged_runs.err
    assert "knn baseline [sweep]" in tagged_runs.out and "param.k" in tagged_runs.out
    ordered = mlopen("runs", "list", "--ordering=-metric.accuracy", "--json")
    assert [run["id"] for run in ordered.json["results"]] == [second.pk, first.pk]


def test_too_long_tag_is_refused_naming_the_field(server, mlopen, runs):
    result = mlopen("runs", "tag", runs[0].pk, "x" * 65)
    assert result.code != 0
    assert "tags" in result.err
    assert list(Run.objects.get(pk=runs[0].pk).tags.all()) == []


def test_compare_and_delete(server, mlopen, runs):
    first, second = runs
    compared = mlopen("runs", "compare", first.pk, second.pk)
    assert compared.code == 0, compared.err
    assert "k *" in compared.out and "0.3 (0.3–0.3)" in compared.out
    as_json = mlopen("runs", "compare", first.pk, second.pk, "--json").json
    assert as_json["differing_params"] == ["k"]
    refused = mlopen("runs", "delete", first.pk)  # not a terminal: asks for --yes
    assert refused.code != 0 and "--yes" in refused.err
    deleted = mlopen("runs", "delete", first.pk, second.pk, "--yes")
    assert deleted.code == 0, deleted.err
    assert "Deleted 2 runs." in deleted.out
    assert not Run.objects.exists()
