from django.shortcuts import render

from mlopen.core.access import LOGGED_IN, access
from mlopen.core.roles import can_upload_pipelines
from mlopen.datasets.models import Dataset
from mlopen.pipelines.models import Pipeline
from mlopen.runs import fairness
from mlopen.runs.models import Run
from mlopen.runs.workers import live_workers


@access(LOGGED_IN)
def home(request):
    user = request.user
    runs = Run.objects.visible_to(user)
    context = {
        "recent_runs": runs.select_related("pipeline", "version", "owner")[:8],
        "run_count": runs.count(),
        "active_count": runs.filter(status__in=[Run.Status.QUEUED, Run.Status.RUNNING]).count(),
        "pipelines": Pipeline.objects.visible_to(user).order_by("-updated_at")[:6],
        "pipeline_count": Pipeline.objects.visible_to(user).count(),
        "dataset_count": Dataset.objects.visible_to(user).count(),
        "trained_count": runs.filter(kind=Run.Kind.TRAIN, status=Run.Status.SUCCEEDED).count(),
        "worker_count": live_workers().count(),
        "can_upload": can_upload_pipelines(user),
        "usage": fairness.usage_of(user),
    }
    return render(request, "web/home.html", context)
