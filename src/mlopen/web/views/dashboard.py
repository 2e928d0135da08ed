from django.shortcuts import render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import condition, require_GET

from mlopen.core.access import LOGGED_IN, access
from mlopen.core.roles import can_upload_pipelines
from mlopen.datasets.models import Dataset
from mlopen.pipelines.models import Pipeline
from mlopen.runs import fairness
from mlopen.runs.models import Run
from mlopen.runs.workers import live_workers
from mlopen.web import live

RECENT_RUNS = 8


def _counts(user) -> dict:
    """The home page's counters: what its live fragment shows and what its ETag is made of."""
    runs = Run.objects.visible_to(user)
    return {
        "run_count": runs.count(),
        "active_count": runs.filter(status__in=[Run.Status.QUEUED, Run.Status.RUNNING]).count(),
        "pipeline_count": Pipeline.objects.visible_to(user).count(),
        "dataset_count": Dataset.objects.visible_to(user).count(),
        "worker_count": live_workers().count(),
        # The user's own runs against their limits (runs.fairness): changes with their queued and
        # running runs, which the ETag's active count follows.
        "usage": fairness.usage_of(user),
    }


def _etag(request) -> str:
    user = request.user
    runs = Run.objects.visible_to(user)
    return live.etag_of(
        request,
        live.page_signature(runs, 1, RECENT_RUNS),
        runs.filter(status__in=[Run.Status.QUEUED, Run.Status.RUNNING]).count(),
        Pipeline.objects.visible_to(user).count(),
        Dataset.objects.visible_to(user).count(),
        live_workers().count(),
    )


def _recent_runs(user) -> list[Run]:
    recent = list(Run.objects.visible_to(user).select_related("pipeline", "version", "owner")[:RECENT_RUNS])
    live.mark_for_notifications(user, recent)
    return recent


@access(LOGGED_IN)
def home(request):
    user = request.user
    runs = Run.objects.visible_to(user)
    context = {
        **_counts(user),
        "recent_runs": _recent_runs(user),
        "pipelines": Pipeline.objects.visible_to(user).order_by("-updated_at")[:6],
        "trained_count": runs.filter(kind=Run.Kind.TRAIN, status=Run.Status.SUCCEEDED).count(),
        "can_upload": can_upload_pipelines(user),
        "live_etag": live.quoted(_etag(request)),
    }
    return render(request, "web/home.html", context)


@access(LOGGED_IN)
@require_GET
@cache_control(private=True, no_cache=True)
@condition(etag_func=_etag)
def home_live(request):
    """The home page's counters and recent runs, polled; 304 while nothing changed."""
    return render(request, "web/_home_live.html", {**_counts(request.user), "recent_runs": _recent_runs(request.user)})
