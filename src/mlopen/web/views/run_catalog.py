"""The runs list (find: filters, ordering, columns; select: compare, delete) and the compare page."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from mlopen.core.access import LOGGED_IN, access
from mlopen.core.numbers import parse_id, parse_int
from mlopen.core.paging import KeysFirstPaginator
from mlopen.pipelines.models import Pipeline
from mlopen.runs import compare as run_compare
from mlopen.runs import removal, results
from mlopen.runs import search as run_search
from mlopen.runs.models import Run, RunTag
from mlopen.web import live

RUNS_PER_PAGE = 25
# The compare page shows the first rows of each result, side by side.
COMPARE_RESULT_ROWS = 10
ORDER_CHOICES = [
    ("-created", "Newest first"),
    ("created", "Oldest first"),
    ("-duration", "Longest first"),
    ("duration", "Shortest first"),
]


def _ordering_choices(search: run_search.RunSearch) -> list[tuple[str, str]]:
    """The built-in orders, then high/low for each metric column (and the metric ordered by, if other)."""
    choices = list(ORDER_CHOICES)
    metrics = list(search.metric_columns)
    ordered = search.ordering.removeprefix("-")
    if ordered.startswith("metric.") and ordered.removeprefix("metric.") not in metrics:
        metrics.append(ordered.removeprefix("metric."))
    for metric in metrics:
        choices += [(f"-metric.{metric}", f"{metric}: highest first"), (f"metric.{metric}", f"{metric}: lowest first")]
    return choices


def _column_headers(search: run_search.RunSearch) -> list[dict]:
    """Each chosen column's header; a metric's header sorts by it (a second click flips the order)."""
    headers = []
    for column in search.columns:
        prefix, _, name = column.partition(".")
        header = {"label": name, "kind": prefix, "sorted": None, "ordering": None}
        if prefix == "metric":
            if search.ordering == f"-{column}":
                header["sorted"], header["ordering"] = "desc", column
            elif search.ordering == column:
                header["sorted"], header["ordering"] = "asc", f"-{column}"
            else:
                header["ordering"] = f"-{column}"
        headers.append(header)
    return headers


def found_runs(request):
    """The visible runs, those the query string asks for (in its order), the search and its errors."""
    visible = Run.objects.visible_to(request.user)
    runs = visible.select_related("pipeline", "version", "owner").prefetch_related("tags")
    errors: dict[str, str] = {}
    try:
        runs, search = run_search.search_runs(runs, request.GET, request.user)
    except run_search.SearchInvalid as exc:
        # The page says what is wrong (400) and shows no runs rather than the wrong ones.
        errors, search, runs = exc.errors, run_search.RunSearch(), runs.none()
    return visible, runs, search, errors


def rows_context(request, runs, search: run_search.RunSearch, errors: dict) -> dict:
    """What the runs table (web/runs/_rows.html) needs, for the page and its live fragment alike:
    one page of ``runs`` with their chosen columns, each run with what the page does when it ends."""
    page = KeysFirstPaginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    live.mark_for_notifications(request.user, page.object_list)
    rows = [{"run": run, "columns": list(run_search.column_values(run, search).values())} for run in page]
    query = request.GET.urlencode()
    return {
        "page": page,
        "rows": rows,
        "search": search,
        "errors": errors,
        "filtered": search.filtered or bool(errors),
        "headers": _column_headers(search),
        # Where a bulk action comes back to: the list as filtered, also when the live fragment drew it.
        "back": reverse("web:run-list") + (f"?{query}" if query else ""),
    }


def runs_etag(request, runs=None) -> str:
    """The live fragment's ETag: the count and the rows of the page it shows (``runs``: the found
    runs, when the caller has them already)."""
    if runs is None:
        _visible, runs, _search, _errors = found_runs(request)
    page_number = parse_int(request.GET.get("page", "")) or 1
    return live.etag_of(request, live.page_signature(runs, page_number, RUNS_PER_PAGE))


@access(LOGGED_IN)
@require_GET
def run_list(request):
    visible, runs, search, errors = found_runs(request)
    form = {key: request.GET.get(key, "") for key in (*run_search.FILTERS, "ordering", "columns")}
    return render(
        request,
        "web/runs/list.html",
        {
            **rows_context(request, runs, search, errors),
            "live_etag": live.quoted(runs_etag(request, runs)),
            "form": form,
            "ordering_choices": _ordering_choices(search),
            "pipelines": Pipeline.objects.visible_to(request.user).order_by("name").only("pk", "name"),
            "known_tags": RunTag.objects.filter(run__in=visible.values("pk"))
            .order_by("name")
            .values_list("name", flat=True)
            .distinct()[:200],
            "kinds": Run.Kind.choices,
            "statuses": Run.Status.choices,
        },
        status=400 if errors else 200,
    )


# --- compare --------------------------------------------------------------------------------------


def _first_rows(run: Run) -> dict | None:
    source = results.source_of(run) if run.result_rows is not None else None
    if source is None:
        return None
    return results.page_of(source, 1, COMPARE_RESULT_ROWS, expect_table=True)


def _charts(comparison: run_compare.Comparison) -> list[dict]:
    """One plotly chart per metric, a line per run (the same colour for a run in every chart)."""
    charts = []
    for n, (name, per_run) in enumerate(sorted(comparison.series.items())):
        traces = [
            {"type": "scatter", "mode": "lines+markers", "name": run.display_name, **points}
            for run, points in zip(comparison.runs, per_run, strict=True)
            if points["x"]
        ]
        charts.append(
            {
                "name": name,
                "dom_id": f"compare-metric-{n}",
                "figure": {
                    "data": traces,
                    "layout": {
                        "title": {"text": name},
                        "height": 340,
                        "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
                        "xaxis": {"title": {"text": "step"}},
                        "legend": {"orientation": "h", "y": -0.3},
                    },
                },
            }
        )
    return charts


@access(LOGGED_IN)
@require_GET
def run_compare_page(request):
    raw = request.GET.getlist("ids")
    if len(raw) > 1 or set(request.GET) - {"ids"}:
        # From the list's checkboxes (ids=1&ids=2, and the form's token): the short, shareable URL.
        ids = ",".join(part for value in raw for part in value.split(",") if part.strip())
        return redirect(reverse("web:run-compare") + "?" + urlencode({"ids": ids}, safe=","))
    try:
        runs = run_compare.visible_runs(request.user, run_compare.parse_ids(raw))
    except run_compare.CompareInvalid as exc:
        if exc.status == 404:
            raise Http404(exc.message) from None
        return render(request, "web/runs/compare.html", {"error": exc.message}, status=400)
    comparison = run_compare.compare(runs)
    return render(
        request,
        "web/runs/compare.html",
        {
            "runs": runs,
            "param_rows": [
                {"name": name, "values": values, "differs": name in comparison.differing_params}
                for name, values in comparison.params.items()
            ],
            "metric_rows": [{"name": name, "cells": cells} for name, cells in sorted(comparison.metrics.items())],
            "charts": _charts(comparison),
            "tables": [{"run": run, "result": _first_rows(run)} for run in runs],
            "result_rows": COMPARE_RESULT_ROWS,
        },
    )


# --- delete ---------------------------------------------------------------------------------------


def _posted_ids(request) -> list[int]:
    ids: list[int] = []
    for value in request.POST.getlist("ids"):
        for part in value.split(","):
            run_id = parse_id(part)
            if run_id is not None and run_id not in ids:
                ids.append(run_id)
    return ids


def _back(request) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return reverse("web:run-list")


@access(LOGGED_IN)
@require_POST
def runs_delete(request):
    """Delete the runs chosen (one from its page, or many from the list) after a confirmation page."""
    ids = _posted_ids(request)
    if not ids or len(ids) > removal.MAX_BULK:
        messages.warning(request, f"Choose 1 to {removal.MAX_BULK} runs to delete.")
        return redirect(_back(request))
    try:
        runs = removal.manageable_runs(request.user, ids)
    except removal.DeleteRefused as exc:  # another user's run (or none): 404, as everywhere
        raise Http404(exc.message) from None
    if request.POST.get("confirm") != "yes":
        runs = sorted(runs, key=lambda run: -run.pk)
        return render(
            request,
            "web/runs/delete.html",
            {
                "runs": Run.objects.filter(pk__in=ids).select_related("pipeline", "version", "owner"),
                "ids": ",".join(str(run.pk) for run in runs),
                "unfinished": [run for run in runs if not run.is_finished],
                "next": _back(request),
            },
        )
    try:
        deleted = removal.delete_runs(runs)
    except removal.DeleteRefused as exc:
        messages.error(request, exc.message)
        return redirect(_back(request))
    messages.success(request, f"Deleted {deleted} run{'s' if deleted != 1 else ''} with their results and logs.")
    target = _back(request)
    if len(ids) == 1 and target.startswith(reverse("web:run-detail", args=[ids[0]])):
        target = reverse("web:run-list")  # its own page is gone
    return redirect(target)
