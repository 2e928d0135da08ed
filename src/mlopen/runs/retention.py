"""Retention: which finished runs are old enough to go, and deleting them with their results, logs
and the models only they needed. `mlopen manage prune` and the periodic task `mlopen.prune` call
``prune``; the rules are in ``expired_runs`` alone.

A finished run is expired when it ended more than its pipeline's ``retention_days`` ago (empty:
MLOPEN_RETENTION_DAYS; 0 or unset: never). Of those, a run stays when it is

- tagged ``keep`` (runs.RunTag),
- shared (with everyone or a group: others may rely on it),
- given a model that has an alias (pipelines.ModelAlias), or
- the training run of a model still in use: its pipeline's latest model, an aliased one, or one
  given to a run that stays.

A deleted training run takes its model (row and file) with it: by then nothing uses that model.
Datasets and pipeline code are never touched here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Length
from django.utils import timezone

from mlopen.core import storage
from mlopen.pipelines.models import ModelAlias, Pipeline, TrainedModel
from mlopen.runs.models import Run, RunLogChunk, RunResult, RunTag

log = logging.getLogger(__name__)

KEEP_TAG = "keep"
# Runs deleted per transaction: SQLite's write lock is held for one batch, not for the whole prune.
BATCH = 200


def days_kept(pipeline: Pipeline) -> tuple[int | None, bool]:
    """How many days ``pipeline``'s finished runs are kept (None: until someone deletes them), and
    whether that is the pipeline's own setting rather than MLOPEN_RETENTION_DAYS."""
    if pipeline.retention_days is not None:
        return pipeline.retention_days or None, True
    return settings.MLOPEN_RETENTION_DAYS or None, False


def _old_enough(now) -> Q | None:
    """Finished runs past their pipeline's retention, as one condition; None when nothing expires."""
    conditions = Q()
    default_days = settings.MLOPEN_RETENTION_DAYS
    if default_days > 0:
        conditions |= Q(pipeline__retention_days__isnull=True, finished_at__lt=now - timedelta(days=default_days))
    for pipeline_id, days in Pipeline.objects.filter(retention_days__gt=0).values_list("pk", "retention_days"):
        conditions |= Q(pipeline_id=pipeline_id, finished_at__lt=now - timedelta(days=days or 0))
    return conditions or None


def _aliased_models() -> QuerySet[TrainedModel]:
    return TrainedModel.objects.filter(pk__in=ModelAlias.objects.values("model_id"))


def _latest_models() -> QuerySet[TrainedModel]:
    newest = TrainedModel.objects.filter(pipeline=OuterRef("pipeline")).order_by("-number").values("pk")[:1]
    return TrainedModel.objects.filter(pk=Subquery(newest))


def expired_runs(now=None) -> list[int]:
    """The ids of the finished runs retention deletes now (see the module's rules)."""
    now = now or timezone.now()
    old_enough = _old_enough(now)
    if old_enough is None:
        return []
    candidates = (
        Run.objects.filter(status__in=Run.FINISHED, finished_at__isnull=False)
        .filter(old_enough)
        .exclude(shared_with_all=True)
        .exclude(pk__in=Run.shared_groups.through.objects.values("run_id"))
        .exclude(trained_model__in=_aliased_models())
        .exclude(pk__in=RunTag.objects.filter(name=KEEP_TAG).values("run_id"))
    )
    doomed = set(candidates.values_list("pk", flat=True))
    if not doomed:
        return []
    pinned = set(_latest_models().values_list("pk", flat=True)) | set(_aliased_models().values_list("pk", flat=True))
    # A model given to a run that stays is in use, and so stays its training run; a training run that
    # stays is not given a model itself, so one pass would do, but a loop costs nothing and is sure.
    while True:
        used = set(
            Run.objects.filter(trained_model__isnull=False)
            .exclude(pk__in=doomed)
            .values_list("trained_model_id", flat=True)
        )
        in_use = pinned | used
        trainers = set(TrainedModel.objects.filter(pk__in=in_use, run_id__in=doomed).values_list("run_id", flat=True))
        if not trainers:
            return sorted(doomed)
        doomed -= trainers


@dataclass
class Pruned:
    runs: int = 0
    models: int = 0
    bytes: int = 0
    run_ids: list[int] = field(default_factory=list)
    dry_run: bool = False

    def describe(self) -> str:
        verb = "Would delete" if self.dry_run else "Deleted"
        return (
            f"{verb} {self.runs} run{'s' if self.runs != 1 else ''} and {self.models} trained "
            f"model{'s' if self.models != 1 else ''}, {'freeing' if not self.dry_run else 'to free'} "
            f"{_human(self.bytes)}."
        )


def _human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover - the loop always returns


def tree_size(storage_folder: str) -> int:
    """The bytes stored under a folder (0 when there is none)."""
    if not storage_folder:
        return 0
    total = 0
    try:
        directories, files = storage.default_storage.listdir(storage_folder)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for name in files:
        total += storage.default_storage.size(f"{storage_folder}/{name}")
    for name in directories:
        total += tree_size(f"{storage_folder}/{name}")
    return total


# A run's log size: the characters of its chunks (runs.logs), one subquery per run.
_log_size = (
    RunLogChunk.objects.filter(run=OuterRef("pk"))
    .order_by()
    .values("run")
    .annotate(total=Sum(Length("text")))
    .values("total")
)


def prune(dry_run: bool = False, now=None) -> Pruned:
    """Delete the expired runs (``expired_runs``) with their results, logs and the models they alone
    trained; with ``dry_run``, only say what that would delete and free. Returns what was (or would be) freed."""
    run_ids = expired_runs(now)
    done = Pruned(run_ids=run_ids, dry_run=dry_run)
    for start in range(0, len(run_ids), BATCH):
        batch = run_ids[start : start + BATCH]
        rows = list(
            Run.objects.filter(pk__in=batch)
            .annotate(log_bytes=Subquery(_log_size), kept_bytes=RunResult.stored_bytes("stored_result__"))
            .values("pk", "result_folder", "log_bytes", "kept_bytes")
        )
        models = list(TrainedModel.objects.filter(run_id__in=batch).values("pk", "artifact", "size"))
        done.runs += len(rows)
        done.models += len(models)
        done.bytes += sum(
            (row["log_bytes"] or 0) + (row["kept_bytes"] or 0) + tree_size(row["result_folder"]) for row in rows
        )
        done.bytes += sum(model["size"] for model in models)
        if dry_run:
            continue
        with transaction.atomic():
            TrainedModel.objects.filter(pk__in=[model["pk"] for model in models]).delete()
            Run.objects.filter(pk__in=[row["pk"] for row in rows]).delete()
        # The rows are gone first: a file without a row is an orphan the storage page finds; a row
        # without its file would be a broken page.
        for row in rows:
            if row["result_folder"]:
                storage.delete_tree(row["result_folder"])
        for model in models:
            storage.delete_file(model["artifact"])
    if run_ids:
        log.info("retention: %s", done.describe())
    return done
