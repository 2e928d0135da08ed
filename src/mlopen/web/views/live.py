"""The fragments pages poll to stay current (htmx, every few seconds): 304 while nothing changed.

Each reuses its page's own queryset and templates (mlopen.web.live has the ETag)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import condition, require_GET

from mlopen.core.access import LOGGED_IN, VIEW, access
from mlopen.pipelines.models import Pipeline
from mlopen.runs.models import Run
from mlopen.web import live
from mlopen.web.views import run_catalog

PIPELINE_RECENT_RUNS = 10


@access(LOGGED_IN)
@require_GET
@cache_control(private=True, no_cache=True)
@condition(etag_func=lambda request: run_catalog.runs_etag(request))
def run_list_live(request):
    """The runs table (with the list's filters, order, columns and page from the query string)."""
    _visible, runs, search, errors = run_catalog.found_runs(request)
    return render(request, "web/runs/_rows.html", run_catalog.rows_context(request, runs, search, errors))


def pipeline_runs(request, pipeline: Pipeline):
    return Run.objects.visible_to(request.user).filter(pipeline=pipeline)


def recent_runs_of(request, pipeline: Pipeline) -> list[Run]:
    runs = pipeline_runs(request, pipeline).select_related("pipeline", "version", "owner")
    recent = list(runs[:PIPELINE_RECENT_RUNS])
    live.mark_for_notifications(request.user, recent)
    return recent


def _pipeline(request, pk: int) -> Pipeline:
    return get_object_or_404(Pipeline.objects.visible_to(request.user).only("pk", "name"), pk=pk)


def _pipeline_etag(request, pk: int) -> str | None:
    pipeline = Pipeline.objects.visible_to(request.user).filter(pk=pk).only("pk").first()
    if pipeline is None:
        return None  # the view answers 404
    return live.etag_of(request, pk, live.page_signature(pipeline_runs(request, pipeline), 1, PIPELINE_RECENT_RUNS))


def pipeline_etag(request, pipeline: Pipeline) -> str:
    return live.quoted(_pipeline_etag(request, pipeline.pk) or "")


@access(VIEW)
@require_GET
@cache_control(private=True, no_cache=True)
@condition(etag_func=_pipeline_etag)
def pipeline_runs_live(request, pk: int):
    """A pipeline page's recent runs."""
    pipeline = _pipeline(request, pk)
    return render(
        request,
        "web/pipelines/_recent_runs.html",
        {"pipeline": pipeline, "recent_runs": recent_runs_of(request, pipeline)},
    )
