"""Retention and the storage report, on a real storage folder: prune deletes the finished runs past
their retention with their results, logs and the models only they trained, and keeps what it
must; --dry-run and the orphan preview change nothing (a snapshot of the storage and of the rows
before and after says so); orphaned files go, referenced and unknown ones stay."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

pytestmark = pytest.mark.django_db

RESULT = {"columns": ["n"], "data": [[1], [2]], "graphs": [], "text": None, "warnings": []}


def _pipeline(name, **fields):
    from mlopen.core import storage
    from mlopen.pipelines.models import Pipeline, PipelineVersion

    pipeline = Pipeline.objects.create(name=name, **fields)
    version = PipelineVersion.objects.create(
        pipeline=pipeline, number=1, control_filename="control.py", folder=f"pipelines/{pipeline.pk}/v1"
    )
    storage.write_stream(f"{version.folder}/control.py", [b"def run_pipeline(*a): pass\n"])
    return pipeline


def _run(owner, pipeline, days_ago, status="succeeded", kind="run", model=None, **fields):
    from mlopen.runs import results
    from mlopen.runs.models import Run, RunLogChunk

    ended = timezone.now() - timedelta(days=days_ago)
    run = Run.objects.create(
        pipeline=pipeline,
        version=pipeline.latest_version,
        kind=kind,
        owner=owner,
        status=status,
        started_at=ended - timedelta(minutes=1),
        finished_at=ended if status in Run.FINISHED else None,
        trained_model=model,
        **fields,
    )
    RunLogChunk.objects.create(run=run, seq=0, offset=0, text="a line of log\n" * 10)
    if status == "succeeded":
        folder, rows = results.store_result(run.pk, dict(RESULT), [])
        Run.objects.filter(pk=run.pk).update(result_folder=folder, result_rows=rows)
        run.refresh_from_db()
    return run


def _trained(owner, pipeline, days_ago):
    """A training run of ``days_ago`` and the model it saved (the pipeline's newest so far)."""
    from mlopen.core import storage
    from mlopen.pipelines.models import TrainedModel

    run = _run(owner, pipeline, days_ago, kind="train")
    number = TrainedModel.objects.filter(pipeline=pipeline).count() + 1
    artifact = f"models/{pipeline.pk}/{number}-run{run.pk}.pkl"
    size, _digest = storage.write_stream(artifact, [b"pickled model" * 10])
    model = TrainedModel.objects.create(
        pipeline=pipeline, version=pipeline.latest_version, run=run, number=number, artifact=artifact, size=size
    )
    return run, model


def _snapshot():
    """Every stored file with its digest, and the ids of every run and model."""
    from mlopen.core import storage
    from mlopen.pipelines.models import TrainedModel
    from mlopen.runs.models import Run

    root = storage.local_root()
    files = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            files[os.path.relpath(path, root)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return (
        files,
        sorted(Run.objects.values_list("pk", flat=True)),
        sorted(TrainedModel.objects.values_list("pk", flat=True)),
    )


@pytest.fixture
def world(settings, user, outsider_user):
    settings.MLOPEN_RETENTION_DAYS = 30
    main = _pipeline("main")
    forever = _pipeline("forever", retention_days=0)
    short = _pipeline("short", retention_days=10)
    train_a, model_a = _trained(user, main, 60)  # model 1: given to a recent run, so in use
    train_b, model_b = _trained(user, main, 50)  # model 2: given only to an old run that goes
    train_c, model_c = _trained(user, main, 40)  # model 3: the pipeline's latest
    return {
        "old": _run(user, main, 40),
        "old_failed": _run(user, main, 45, status="failed"),
        "old_with_b": _run(outsider_user, main, 35, model=model_b),
        "recent_with_a": _run(user, main, 5, model=model_a),
        "young": _run(user, main, 29),
        "running": _run(user, main, 90, status="running"),
        "old_shared": _run(user, main, 40, shared_with_all=True),
        "kept_forever": _run(user, forever, 400),
        "short_old": _run(user, short, 15),
        "short_young": _run(user, short, 5),
        "train_a": train_a,
        "train_b": train_b,
        "train_c": train_c,
        "model_a": model_a,
        "model_b": model_b,
        "model_c": model_c,
    }


@pytest.fixture
def outsider_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-password-1")


def test_prune_deletes_what_expired_and_keeps_what_it_must(world):
    from mlopen.core import storage
    from mlopen.pipelines.models import TrainedModel
    from mlopen.runs import retention
    from mlopen.runs.models import Run

    gone = ["old", "old_failed", "old_with_b", "short_old", "train_b"]
    kept = ["recent_with_a", "young", "running", "old_shared", "kept_forever", "short_young", "train_a", "train_c"]
    assert retention.expired_runs() == sorted(world[name].pk for name in gone)

    pruned = retention.prune()

    assert (pruned.runs, pruned.models) == (5, 1)
    remaining = set(Run.objects.values_list("pk", flat=True))
    assert remaining == {world[name].pk for name in kept}
    assert set(TrainedModel.objects.values_list("pk", flat=True)) == {world["model_a"].pk, world["model_c"].pk}
    assert not storage.exists(world["model_b"].artifact)
    assert storage.exists(world["model_a"].artifact) and storage.exists(world["model_c"].artifact)
    for name in gone:
        folder = world[name].result_folder
        assert not folder or not (storage.local_root() / folder).exists()
    for name in kept:
        if world[name].result_folder:
            assert (storage.local_root() / world[name].result_folder / "meta.json").exists() or any(
                (storage.local_root() / world[name].result_folder).iterdir()
            )
    # What was freed: the logs, the result folders and the model's file.
    assert pruned.bytes > world["model_b"].size + 5 * len("a line of log\n" * 10)
    assert retention.prune().runs == 0  # nothing left to do


def test_a_run_tagged_keep_stays_however_old(world):
    from mlopen.runs import retention
    from mlopen.runs.models import RunTag

    RunTag.objects.create(run=world["old"], name="keep")
    RunTag.objects.create(run=world["old_failed"], name="keeper")  # only the tag "keep" itself keeps

    expired = retention.expired_runs()
    assert world["old"].pk not in expired
    assert world["old_failed"].pk in expired


def test_a_run_given_an_aliased_model_stays_and_so_does_the_models_training(world, user):
    from mlopen.pipelines.models import ModelAlias, TrainedModel
    from mlopen.runs import retention
    from mlopen.runs.models import Run

    # model b is neither the latest nor given to a run that stays: without an alias it goes.
    ModelAlias.objects.create(
        pipeline=world["model_b"].pipeline, name="production", model=world["model_b"], set_by=user
    )

    expired = retention.expired_runs()
    assert world["old_with_b"].pk not in expired  # it was given an aliased model
    assert world["train_b"].pk not in expired  # the aliased model's training run
    assert world["old"].pk in expired

    retention.prune()
    assert TrainedModel.objects.filter(pk=world["model_b"].pk).exists()
    assert Run.objects.filter(pk__in=[world["old_with_b"].pk, world["train_b"].pk]).count() == 2


def test_dry_run_changes_nothing_and_says_what_it_would_free(world):
    from mlopen.runs import retention

    before = _snapshot()
    out = StringIO()
    call_command("prune", "--dry-run", stdout=out)
    assert _snapshot() == before
    expected = retention.prune(dry_run=True)
    assert out.getvalue().strip() == expected.describe()
    assert out.getvalue().startswith("Would delete 5 runs and 1 trained model, to free ")

    out = StringIO()
    call_command("prune", stdout=out)
    assert out.getvalue().startswith("Deleted 5 runs and 1 trained model, freeing ")
    assert _snapshot() != before


def test_nothing_expires_when_retention_is_off(world, settings):
    from mlopen.runs import retention

    settings.MLOPEN_RETENTION_DAYS = 0
    # Only the pipeline with its own retention (10 days) still prunes.
    assert retention.expired_runs() == [world["short_old"].pk]
    # The periodic task (celery beat in `mlopen serve`) does what `mlopen manage prune` does.
    from mlopen.runs.tasks import prune

    assert prune().startswith("Deleted 1 run and 0 trained models, freeing ")
    assert retention.expired_runs() == []


def test_a_pipelines_retention_is_set_by_its_maintainers_through_the_api(api_for, user, author, world):
    from mlopen.pipelines.models import Pipeline

    main = Pipeline.objects.get(name="main")
    Pipeline.objects.filter(pk=main.pk).update(created_by=author)
    refused = api_for(user).patch(f"/api/v1/pipelines/{main.pk}/", {"retention_days": 7}, format="json")
    assert refused.status_code == 403
    bad = api_for(author).patch(f"/api/v1/pipelines/{main.pk}/", {"retention_days": -1}, format="json")
    assert bad.status_code == 400 and "retention_days" in bad.json()["errors"]
    done = api_for(author).patch(f"/api/v1/pipelines/{main.pk}/", {"retention_days": 7}, format="json")
    assert done.status_code == 200 and done.json()["retention_days"] == 7
    cleared = api_for(author).patch(f"/api/v1/pipelines/{main.pk}/", {"retention_days": None}, format="json")
    assert cleared.json()["retention_days"] is None


def _stray(name: str, age_hours: float, content: bytes = b"stray") -> None:
    from mlopen.core import storage

    storage.write_stream(name, [content])
    then = time.time() - age_hours * 3600
    os.utime(storage.local_root() / name, (then, then))


def test_orphans_are_previewed_then_removed_and_nothing_referenced_goes(world):
    from mlopen.core import storage
    from mlopen.runs import storage_report

    _stray("results/999999/table.parquet", 5)
    _stray("models/1/77-run999999.pkl", 5)
    _stray("datasets/1/deadbeef/left.csv", 5)
    _stray("results/999998/young.json", 0.1)  # may be an upload whose row is not committed yet
    _stray("backups/elsewhere.tar", 5)  # not one of mlopen's folders: not its to judge

    before = _snapshot()
    preview = storage_report.remove_orphans(dry_run=True)
    assert _snapshot() == before
    assert sorted(preview.names) == [
        "datasets/1/deadbeef/left.csv",
        "models/1/77-run999999.pkl",
        "results/999999/table.parquet",
    ]
    report = storage_report.report()
    assert report.orphan_count == 3 and report.orphan_bytes == 3 * len(b"stray")

    removed = storage_report.remove_orphans()
    assert removed.files == 3
    files, runs, models = _snapshot()
    assert (runs, models) == before[1:]
    assert set(files) == set(before[0]) - set(preview.names)
    assert storage.exists("results/999998/young.json") and storage.exists("backups/elsewhere.tar")


def test_the_report_adds_up_usage_by_kind_user_and_pipeline(world, user):
    from mlopen.pipelines.models import TrainedModel
    from mlopen.runs import storage_report

    report = storage_report.report()
    model_bytes = sum(TrainedModel.objects.values_list("size", flat=True))
    assert report.by_kind["models"] == model_bytes
    assert report.by_kind["results"] > 0 and report.by_kind["code"] > 0 and report.by_kind["logs"] > 0
    by_user = {row["name"]: row for row in report.by_user}
    assert by_user["alice"]["models"] == model_bytes  # alice trained them all
    assert by_user["bob"]["results"] > 0
    by_pipeline = {row["name"]: row for row in report.by_pipeline}
    assert set(by_pipeline) == {"main", "forever", "short"}
    assert sum(row["total"] for row in report.by_user) + sum(row["code"] for row in report.by_pipeline) == report.total


def _kept_in_database(run):
    """Turn ``run``'s result into one kept in the database, as a worker keeps a small one."""
    from mlopen.core import storage
    from mlopen.runs import results
    from mlopen.runs.models import Run

    folder = storage.local_path(run.result_folder)
    file_bytes = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    storage.delete_tree(run.result_folder)
    kept = results.keep(run.pk, {"columns": ["n"], "data": [[i] for i in range(50)], "text": "small"})
    kept.in_database.save(force_insert=True)
    Run.objects.filter(pk=run.pk).update(**kept.run_fields())
    return len(kept.in_database.meta) + len(kept.in_database.table), file_bytes


def test_results_kept_in_the_database_are_counted_freed_and_reported_as_results(world, user):
    from mlopen.runs import retention, storage_report
    from mlopen.runs.models import RunResult

    report_before = storage_report.report()
    freed_before = retention.prune(dry_run=True).bytes
    old_row, old_files = _kept_in_database(world["old"])  # expires
    young_row, young_files = _kept_in_database(world["young"])  # stays

    assert retention.prune(dry_run=True).bytes == freed_before - old_files + old_row
    report = storage_report.report()
    moved = old_row + young_row - old_files - young_files
    assert report.by_kind["results"] == report_before.by_kind["results"] + moved
    by_user = {row["name"]: row for row in report.by_user}
    assert by_user["alice"]["results"] == {r["name"]: r for r in report_before.by_user}["alice"]["results"] + moved
    assert report.orphan_count == report_before.orphan_count

    retention.prune()
    assert not RunResult.objects.filter(run_id=world["old"].pk).exists()
    assert RunResult.objects.filter(run_id=world["young"].pk).exists()
