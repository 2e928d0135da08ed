"""Deleting runs, one or many: the rows (metrics, tags and log with them) and their stored results.

Only finished runs are deleted: a queued or running run is refused (409) until it is cancelled,
since a worker may be writing its result at that moment. A training run's model is kept: it
belongs to the pipeline (other runs use it, it may be the current model), and its ``run`` link
is simply cleared. Either every run asked for is deleted or none is.

Dataset quotas count datasets only (datasets.services.storage_usage, summed from the rows), so
deleting runs changes no quota; it frees the disk their results took.
"""

from __future__ import annotations

import logging

from django.db import transaction

from mlopen.core import storage
from mlopen.runs import results
from mlopen.runs.models import Run

log = logging.getLogger(__name__)

MAX_BULK = 500


class DeleteRefused(ValueError):
    def __init__(self, message: str, errors: dict[str, str] | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}
        self.status = status


def manageable_runs(user, ids: list[int]) -> list[Run]:
    """The runs ``ids`` if ``user`` may delete every one (owner, admin); else 404 for all of them."""
    runs = list(Run.objects.manageable_by(user).filter(pk__in=ids))
    missing = sorted(set(ids) - {run.pk for run in runs})
    if missing:
        shown = ", ".join(str(pk) for pk in missing[:10])
        raise DeleteRefused(f"There is no run {shown} you can delete.", {"ids": f"Unknown run {shown}."}, 404)
    return runs


def delete_runs(runs: list[Run]) -> int:
    """Delete ``runs`` (already checked as the caller's to manage) and their results; all or nothing."""
    going = [run.pk for run in runs if not run.is_finished]
    if going:
        listed = ", ".join(str(pk) for pk in going[:10])
        raise DeleteRefused(
            f"Run{'s' if len(going) > 1 else ''} {listed} {'are' if len(going) > 1 else 'is'} still queued or "
            "running; cancel first, then delete.",
            {"ids": f"Not finished: {listed}."},
            status=409,
        )
    ids = [run.pk for run in runs]
    folders = [run.result_folder or results.folder_of(run.pk) for run in runs]
    with transaction.atomic():
        # Re-checked inside the write: a run may have been re-queued since it was read.
        if Run.objects.filter(pk__in=ids).exclude(status__in=Run.FINISHED).exists():
            raise DeleteRefused("A run started again meanwhile; nothing was deleted.", {"ids": "Not finished."}, 409)
        Run.objects.filter(pk__in=ids).delete()

        def free():
            for folder in folders:
                try:
                    storage.delete_tree(folder)
                except Exception:  # noqa: BLE001 - the rows are gone; a folder left behind is only disk, logged
                    log.exception("could not delete the stored result %s", folder)

        transaction.on_commit(free)
    return len(ids)
