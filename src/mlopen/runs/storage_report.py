"""What the stored files are, who and what they belong to, and which belong to nothing.

Every stored name starts with the kind of thing it is (see where each is written):
``datasets/<owner>/<uuid>/<file>`` (Dataset.file), ``pipelines/<pk>/v<n>/...`` (PipelineVersion.folder),
``models/<pipeline>/<n>-run<id>.pkl`` (TrainedModel.artifact) and ``results/<run>/...`` (Run.result_folder;
small results are RunResult rows instead, counted with the results).
A file under one of those no row refers to is an orphan (an upload that failed half-way, a deletion
cut short); a file younger than ORPHAN_GRACE is never one (its row may not be committed yet), and
a name outside those four folders is left alone, whatever it is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db.models import Sum
from django.db.models.functions import Length
from django.utils import timezone

from mlopen.core import storage
from mlopen.datasets.models import Dataset
from mlopen.pipelines.models import Pipeline, PipelineVersion, TrainedModel
from mlopen.runs.models import Run, RunLogChunk, RunResult

ORPHAN_GRACE = timedelta(hours=1)
KINDS = ("results", "models", "datasets", "logs", "code")
_FOLDER_KIND = {"results": "results", "models": "models", "datasets": "datasets", "pipelines": "code"}
# The orphans the page lists; removing takes them all.
ORPHANS_SHOWN = 200


@dataclass(frozen=True)
class StoredFile:
    name: str
    size: int
    modified: object  # datetime, or None when the storage cannot say


def walk(folder: str = "") -> Iterator[StoredFile]:
    """Every stored file under ``folder`` (the whole storage by default)."""
    default = storage.default_storage
    try:
        directories, files = default.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in files:
        full = f"{folder}/{name}" if folder else name
        try:
            modified = default.get_modified_time(full)
        except (NotImplementedError, OSError):
            modified = None
        yield StoredFile(full, default.size(full), modified)
    for name in directories:
        yield from walk(f"{folder}/{name}" if folder else name)


def _kind(name: str) -> str | None:
    return _FOLDER_KIND.get(name.split("/", 1)[0])


class _References:
    """What the rows refer to, read once: tells whether a stored name belongs to something."""

    def __init__(self) -> None:
        self.result_folders = dict(
            Run.objects.exclude(result_folder="").values_list("result_folder", "pk")
        )  # folder → run id
        self.artifacts = dict(TrainedModel.objects.values_list("artifact", "pk"))
        self.dataset_folders = {
            file.rsplit("/", 1)[0]: pk for file, pk in Dataset.objects.values_list("file", "pk") if "/" in file
        }
        self.version_folders = dict(PipelineVersion.objects.values_list("folder", "pipeline_id"))

    @staticmethod
    def _prefix(name: str, depth: int) -> str:
        return "/".join(name.split("/")[:depth])

    def owner_key(self, name: str) -> tuple[str, int] | None:
        """(kind, the id of the row it belongs to) or None for an orphan."""
        kind = _kind(name)
        if kind == "results":
            run_id = self.result_folders.get(self._prefix(name, 2))
            return ("results", run_id) if run_id is not None else None
        if kind == "models":
            model_id = self.artifacts.get(name)
            return ("models", model_id) if model_id is not None else None
        if kind == "datasets":
            dataset_id = self.dataset_folders.get(name.rsplit("/", 1)[0])
            return ("datasets", dataset_id) if dataset_id is not None else None
        if kind == "code":
            pipeline_id = self.version_folders.get(self._prefix(name, 3))
            return ("code", pipeline_id) if pipeline_id is not None else None
        return None


@dataclass
class Report:
    by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    by_user: list[dict] = field(default_factory=list)  # {"user", kinds..., "total"}
    by_pipeline: list[dict] = field(default_factory=list)
    orphans: list[StoredFile] = field(default_factory=list)
    orphan_count: int = 0
    orphan_bytes: int = 0
    other_bytes: int = 0  # outside the four folders: not mlopen's to judge

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


def _is_orphan_candidate(item: StoredFile, cutoff) -> bool:
    return _kind(item.name) is not None and (item.modified is None or item.modified < cutoff)


def orphans(now=None) -> Iterator[StoredFile]:
    """Stored files in mlopen's folders that no row refers to, older than ORPHAN_GRACE."""
    cutoff = (now or timezone.now()) - ORPHAN_GRACE
    references = _References()
    for item in walk():
        if _is_orphan_candidate(item, cutoff) and references.owner_key(item.name) is None:
            yield item


def _table(totals: dict, names: dict) -> list[dict]:
    rows = []
    for key, kinds in totals.items():
        row = {"name": names.get(key, "—"), **{kind: kinds.get(kind, 0) for kind in KINDS}}
        row["total"] = sum(kinds.values())
        rows.append(row)
    return sorted(rows, key=lambda row: -row["total"])


def report(now=None) -> Report:
    """Usage by kind, user and pipeline (one walk of the storage and a few aggregate queries), and
    the orphans."""
    cutoff = (now or timezone.now()) - ORPHAN_GRACE
    references = _References()
    found = Report()
    per_row: dict[tuple[str, int], int] = defaultdict(int)
    for item in walk():
        key = references.owner_key(item.name)
        if key is not None:
            per_row[key] += item.size
            found.by_kind[key[0]] += item.size
        elif _kind(item.name) is None:
            found.other_bytes += item.size
        elif _is_orphan_candidate(item, cutoff):
            found.orphan_count += 1
            found.orphan_bytes += item.size
            if len(found.orphans) < ORPHANS_SHOWN:
                found.orphans.append(item)
    users: dict[object, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    pipelines: dict[object, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    run_rows = {
        row["pk"]: row
        for row in Run.objects.values("pk", "owner_id", "pipeline_id").filter(
            pk__in=[key for kind, key in per_row if kind == "results"]
        )
    }
    for (kind, row_id), size in per_row.items():
        if kind == "results" and row_id in run_rows:
            users[run_rows[row_id]["owner_id"]]["results"] += size
            pipelines[run_rows[row_id]["pipeline_id"]]["results"] += size
        elif kind == "code":
            pipelines[row_id]["code"] += size
    for model in TrainedModel.objects.values("pipeline_id", "run__owner_id").annotate(size=Sum("size")):
        users[model["run__owner_id"]]["models"] += model["size"] or 0
        pipelines[model["pipeline_id"]]["models"] += model["size"] or 0
    for dataset in Dataset.objects.values("owner_id").annotate(size=Sum("size")):
        users[dataset["owner_id"]]["datasets"] += dataset["size"] or 0
    chunks = RunLogChunk.objects.order_by().values("run__owner_id", "run__pipeline_id")
    for logs in chunks.annotate(size=Sum(Length("text"))):
        users[logs["run__owner_id"]]["logs"] += logs["size"] or 0
        pipelines[logs["run__pipeline_id"]]["logs"] += logs["size"] or 0
        found.by_kind["logs"] += logs["size"] or 0
    # Small results kept in the database (RunResult) count as results, as their files would.
    kept = RunResult.objects.order_by().values("run__owner_id", "run__pipeline_id")
    for result in kept.annotate(size=Sum(RunResult.stored_bytes())):
        users[result["run__owner_id"]]["results"] += result["size"] or 0
        pipelines[result["run__pipeline_id"]]["results"] += result["size"] or 0
        found.by_kind["results"] += result["size"] or 0
    user_names = dict(get_user_model().objects.filter(pk__in=[k for k in users if k]).values_list("pk", "username"))
    pipeline_names = dict(Pipeline.objects.filter(pk__in=list(pipelines)).values_list("pk", "name"))
    found.by_user = _table(users, user_names)
    found.by_pipeline = _table(pipelines, pipeline_names)
    return found


@dataclass
class Removed:
    files: int = 0
    bytes: int = 0
    names: list[str] = field(default_factory=list)
    dry_run: bool = False

    def describe(self) -> str:
        verb = "Would remove" if self.dry_run else "Removed"
        return f"{verb} {self.files} orphaned file{'s' if self.files != 1 else ''} ({self.bytes} bytes)."


def remove_orphans(dry_run: bool = False, now=None) -> Removed:
    """Delete the orphans (``orphans``); with ``dry_run`` only list them. Each is checked again just
    before it goes, so a row committed meanwhile keeps its file."""
    removed = Removed(dry_run=dry_run)
    found = list(orphans(now))
    if not dry_run and found:
        references = _References()  # read again: rows may have come since the walk
        found = [item for item in found if references.owner_key(item.name) is None]
    for item in found:
        removed.files += 1
        removed.bytes += item.size
        removed.names.append(item.name)
        if not dry_run:
            storage.delete_file(item.name)
    return removed
