from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from mlopen.runs import fairness
from mlopen.runs.models import Run, RunLimits, Worker


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "pipeline",
        "kind",
        "status",
        "owner",
        "worker",
        "sandbox",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "kind", "worker", "sandbox"]
    search_fields = ["name", "notes", "tags__name", "pipeline__name", "owner__username", "error"]
    readonly_fields = [f.name for f in Run._meta.fields if f.name != "shared_with_all"]
    filter_horizontal = ["shared_groups"]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Which workers are alive, where, on which queues, under which sandbox, running what."""

    list_display = ["name", "alive", "sandboxed", "hostname", "pid", "queues", "sandbox", "running", "last_seen"]
    readonly_fields = [f.name for f in Worker._meta.fields]

    def get_queryset(self, request):
        # From the Run rows, not Worker.current_run: that one is written by the heartbeat, seconds late.
        running = Run.objects.filter(worker=OuterRef("name"), status=Run.Status.RUNNING).order_by("-started_at")
        return super().get_queryset(request).annotate(running_run=Subquery(running.values("pk")[:1]))

    @admin.display(description="running")
    def running(self, worker: Worker) -> str:
        run_id = getattr(worker, "running_run", None)
        if run_id is None:
            return "-"
        return format_html('<a href="{}">run {}</a>', reverse("admin:runs_run_change", args=[run_id]), run_id)

    @admin.display(boolean=True, description="sandboxed")
    def sandboxed(self, worker: Worker) -> bool:
        # A red cross for a worker that runs pipelines with its own access to its host.
        return worker.sandbox.startswith("bubblewrap:")

    @admin.display(boolean=True)
    def alive(self, worker: Worker) -> bool:
        return worker.last_seen >= timezone.now() - timedelta(seconds=settings.MLOPEN_HEARTBEAT_TIMEOUT)


@admin.register(RunLimits)
class RunLimitsAdmin(admin.ModelAdmin):
    """A user's own limits on runs at once; users without a row get MLOPEN_USER_MAX_RUNNING/QUEUED."""

    list_display = ["user", "max_running", "max_queued", "now"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]

    @admin.display(description="running / queued now")
    def now(self, limits: RunLimits) -> str:
        usage = fairness.usage_of(limits.user)
        return f"{usage.running} / {usage.queued}"
