from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.utils import timezone

from mlopen.runs.models import Run, Worker


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "pipeline", "kind", "status", "owner", "worker", "created_at", "finished_at"]
    list_filter = ["status", "kind", "worker"]
    search_fields = ["pipeline__name", "owner__username", "error"]
    readonly_fields = [f.name for f in Run._meta.fields if f.name != "shared_with_all"]
    filter_horizontal = ["shared_groups"]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Which workers are alive, where, on which queues, under which sandbox, running what."""

    list_display = ["name", "alive", "hostname", "pid", "queues", "sandbox", "current_run", "last_seen"]
    readonly_fields = [f.name for f in Worker._meta.fields]

    @admin.display(boolean=True)
    def alive(self, worker: Worker) -> bool:
        return worker.last_seen >= timezone.now() - timedelta(seconds=settings.MLOPEN_HEARTBEAT_TIMEOUT)
