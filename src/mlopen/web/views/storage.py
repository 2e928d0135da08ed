"""/storage/ (admins): what the stored files take, by kind, user and pipeline; the orphaned files
(with a preview before removing them) and what retention would delete now."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render

from mlopen.core.access import ADMIN, access
from mlopen.runs import retention, storage_report


@access(ADMIN)
def storage_page(request):
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "remove-orphans":
            messages.success(request, storage_report.remove_orphans().describe())
        elif action == "prune":
            messages.success(request, retention.prune().describe())
        else:
            messages.error(request, "Unknown action: choose remove-orphans or prune.")
        return redirect("web:storage")
    return render(
        request,
        "web/storage.html",
        {
            "report": storage_report.report(),
            "kinds": storage_report.KINDS,
            "pruning": retention.prune(dry_run=True),
            "retention_days": settings.MLOPEN_RETENTION_DAYS,
            "orphan_grace_hours": int(storage_report.ORPHAN_GRACE.total_seconds() // 3600),
        },
    )
