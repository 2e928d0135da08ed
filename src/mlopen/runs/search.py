"""Finding runs: the runs list's filters, its ordering and its parameter and metric columns.

The page and the API both call these on a queryset of the runs the user may see, so either
kind of pagination can page what they return. A malformed parameter raises SearchInvalid naming
it; nothing here reads more than the one query the page runs (metric columns and a metric
ordering are subqueries of that query).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import DurationField, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from mlopen.core.numbers import parse_id
from mlopen.pipelines.models import Pipeline
from mlopen.runs.models import Run, RunMetric, RunTag

# Ids are 64-bit; a longer string of digits cannot name anything.
_MAX_ID = 2**63 - 1
MAX_COLUMNS = 20
ORDERINGS = ("created", "duration")
FILTERS = ("q", "tag", "pipeline", "version", "kind", "status", "user", "created_after", "created_before")


class SearchInvalid(ValueError):
    """``errors`` maps the query parameter to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))
        self.errors = errors


@dataclass
class RunSearch:
    """The parsed query: every filter, the ordering and the columns asked for."""

    q: str = ""
    tags: list[str] = field(default_factory=list)
    pipeline: Pipeline | None = None
    version: int | None = None
    kind: str = ""
    statuses: list[str] = field(default_factory=list)
    user: str = ""
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    ordering: str = "-created"
    columns: list[str] = field(default_factory=list)

    @property
    def filtered(self) -> bool:
        return bool(
            self.q
            or self.tags
            or self.pipeline
            or self.version
            or self.kind
            or self.statuses
            or self.user
            or self.created_after
            or self.created_before
        )

    @property
    def metric_columns(self) -> list[str]:
        return [column.removeprefix("metric.") for column in self.columns if column.startswith("metric.")]


def _text(params, name: str, limit: int) -> str:
    value = params.get(name) or ""
    if len(value) > limit:
        raise SearchInvalid({name: f"At most {limit} characters."})
    if "\x00" in value:
        raise SearchInvalid({name: "Cannot contain NUL characters."})
    return value.strip()


def _listed(params, name: str) -> list[str]:
    """A parameter given several times or comma-separated, as one list."""
    values = params.getlist(name) if hasattr(params, "getlist") else [params.get(name) or ""]
    items = [part.strip() for value in values for part in (value or "").split(",")]
    if any("\x00" in item for item in items):
        raise SearchInvalid({name: "Cannot contain NUL characters."})
    return [item for item in items if item]


def _moment(params, name: str, end_of_day: bool) -> dt.datetime | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    moment = day = None
    try:
        # A bare date first: Python's fromisoformat (under parse_datetime) reads it as midnight.
        day = parse_date(raw)
        moment = None if day else parse_datetime(raw)
    except ValueError:
        moment = day = None
    if moment is None and day is None:
        raise SearchInvalid({name: f"Use an ISO date (2026-01-31) or date and time, not {raw[:40]!r}."})
    if moment is None:
        assert day is not None
        # A bare date means the whole day: created_before=2026-01-31 takes in the 31st.
        moment = dt.datetime.combine(day + dt.timedelta(days=1) if end_of_day else day, dt.time())
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _pipeline(value: str, user) -> Pipeline:
    query = Pipeline.objects.visible_to(user)
    pipeline = None
    pipeline_id = parse_id(value)
    if pipeline_id is not None and pipeline_id <= _MAX_ID:
        pipeline = query.filter(pk=pipeline_id).first()
    if pipeline is None:
        pipeline = query.filter(name=value).first()
    if pipeline is None:
        raise SearchInvalid({"pipeline": f"There is no pipeline {value[:100]!r} (give its id or name)."})
    return pipeline


def _columns(params) -> list[str]:
    columns = _listed(params, "columns")
    for column in columns:
        prefix, _, name = column.partition(".")
        if prefix not in ("param", "metric") or not name or len(name) > 100:
            raise SearchInvalid({"columns": f"Name columns param.NAME or metric.NAME, not {column[:60]!r}."})
    if len(columns) > MAX_COLUMNS:
        raise SearchInvalid({"columns": f"At most {MAX_COLUMNS} columns."})
    return list(dict.fromkeys(columns))


def parse(params, user) -> RunSearch:
    """The search in ``params`` (a QueryDict or a dict); SearchInvalid names the first bad parameter."""
    search = RunSearch(
        q=_text(params, "q", 200),
        tags=_listed(params, "tag"),
        kind=_text(params, "kind", 10),
        statuses=_listed(params, "status"),
        user=_text(params, "user", 150),
        created_after=_moment(params, "created_after", end_of_day=False),
        created_before=_moment(params, "created_before", end_of_day=True),
        columns=_columns(params),
    )
    if any(len(tag) > 64 for tag in search.tags):
        raise SearchInvalid({"tag": "A tag has at most 64 characters."})
    if search.kind and search.kind not in Run.Kind.values:
        raise SearchInvalid({"kind": f"Use train or run, not {search.kind[:40]!r}."})
    unknown = [status for status in search.statuses if status not in Run.Status.values]
    if unknown:
        raise SearchInvalid({"status": f"Unknown status {unknown[0][:40]!r}; use {', '.join(Run.Status.values)}."})
    pipeline = _text(params, "pipeline", 200)
    if pipeline:
        search.pipeline = _pipeline(pipeline, user)
    version = _text(params, "version", 20).removeprefix("v")
    if version:
        number = parse_id(version)
        if number is None or number > _MAX_ID:
            raise SearchInvalid({"version": f"Give a version number such as 3, not {version[:20]!r}."})
        search.version = number
    ordering = _text(params, "ordering", 110) or "-created"
    bare = ordering.removeprefix("-")
    if bare not in ORDERINGS and not (bare.startswith("metric.") and len(bare) > len("metric.")):
        raise SearchInvalid(
            {"ordering": f"Order by created, duration or metric.NAME (- before: descending), not {ordering[:60]!r}."}
        )
    search.ordering = ordering
    return search


def filter_runs(runs: QuerySet[Run], search: RunSearch) -> QuerySet[Run]:
    """``runs`` narrowed to what ``search`` asks for."""
    if search.q:
        runs = runs.filter(
            Q(name__icontains=search.q)
            | Q(notes__icontains=search.q)
            | Q(pipeline__name__icontains=search.q)
            | Q(input_name__icontains=search.q)
        )
    for tag in search.tags:  # every tag named: a subquery each, so no duplicate rows from joins
        runs = runs.filter(pk__in=RunTag.objects.filter(name=tag).values("run_id"))
    if search.pipeline is not None:
        runs = runs.filter(pipeline=search.pipeline)
    if search.version is not None:
        runs = runs.filter(version__number=search.version)
    if search.kind:
        runs = runs.filter(kind=search.kind)
    if search.statuses:
        runs = runs.filter(status__in=search.statuses)
    if search.user:
        runs = runs.filter(owner__username=search.user)
    if search.created_after is not None:
        runs = runs.filter(created_at__gte=search.created_after)
    if search.created_before is not None:
        runs = runs.filter(created_at__lt=search.created_before)
    return runs


def last_metric(name: str) -> Subquery:
    """The run's last value of metric ``name``: the highest step, else the latest logged."""
    latest = RunMetric.objects.filter(run=OuterRef("pk"), name=name).order_by(F("step").desc(nulls_last=True), "-id")
    return Subquery(latest.values("value")[:1])


def column_alias(index: int) -> str:
    return f"metric_column_{index}"


def order_runs(runs: QuerySet[Run], search: RunSearch, visible: QuerySet[Run]) -> QuerySet[Run]:
    """``runs`` in the order asked for; a metric that none of ``visible`` logged is SearchInvalid."""
    descending = search.ordering.startswith("-")
    bare = search.ordering.removeprefix("-")
    if bare == "created":
        return runs.order_by("-created_at", "-id") if descending else runs.order_by("created_at", "id")
    if bare == "duration":
        runs = runs.annotate(
            sort_duration=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        )
        key = F("sort_duration")
    else:
        metric = bare.removeprefix("metric.")
        if not RunMetric.objects.filter(run__in=visible.values("pk"), name=metric).exists():
            raise SearchInvalid({"ordering": f"No run you can see logged a metric {metric[:100]!r}."})
        runs = runs.annotate(sort_metric=last_metric(metric))
        key = F("sort_metric")
    # Runs without the value (not finished, metric not logged) come last either way.
    ordered = key.desc(nulls_last=True) if descending else key.asc(nulls_last=True)
    return runs.order_by(ordered, "-id" if descending else "id")


def with_columns(runs: QuerySet[Run], search: RunSearch) -> QuerySet[Run]:
    """Each run with the last value of each metric column, as subqueries of the same query."""
    for index, metric in enumerate(search.metric_columns):
        runs = runs.annotate(**{column_alias(index): last_metric(metric)})
    return runs


def column_values(run: Run, search: RunSearch) -> dict[str, object]:
    """``{"param.lr": 0.1, "metric.accuracy": 0.93}`` for one run annotated by :func:`with_columns`."""
    values: dict[str, object] = {}
    metric_index = 0
    for column in search.columns:
        prefix, _, name = column.partition(".")
        if prefix == "param":
            values[column] = (run.params or {}).get(name)
        else:
            values[column] = getattr(run, column_alias(metric_index), None)
            metric_index += 1
    return values


def search_runs(visible: QuerySet[Run], params, user) -> tuple[QuerySet[Run], RunSearch]:
    """Parse, filter, order and add the columns: the queryset a runs list pages through."""
    search = parse(params, user)
    runs = with_columns(order_runs(filter_runs(visible, search), search, visible), search)
    return runs, search
