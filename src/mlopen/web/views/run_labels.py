"""A run's name, notes and tags on its page: shown to whoever sees the run, edited inline (htmx)
by its owner or an admin."""

from __future__ import annotations

from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET

from mlopen.core.access import MANAGE, VIEW, access
from mlopen.runs import labels
from mlopen.runs import rules as run_rules
from mlopen.runs.models import Run
from mlopen.web.sanitize import format_notes


def labels_context(request, run: Run) -> dict:
    return {
        "run": run,
        "run_tags": labels.tag_names(run),
        "notes_html": format_notes(run.notes),
        "manageable": run_rules.can_manage(request.user, run),
    }


@access(VIEW)
@require_GET
def run_labels(request, pk: int):
    """The labels panel (what "Cancel" in the edit form swaps back in)."""
    run = get_object_or_404(Run.objects.visible_to(request.user).select_related("pipeline"), pk=pk)
    return render(request, "web/runs/_labels.html", labels_context(request, run))


@access(MANAGE)
def run_labels_edit(request, pk: int):
    run = get_object_or_404(Run.objects.manageable_by(request.user).select_related("pipeline"), pk=pk)
    inline = bool(request.headers.get("HX-Request"))
    values = {"name": run.name, "notes": run.notes, "tags": ", ".join(labels.tag_names(run))}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = {key: request.POST.get(key, "") for key in ("name", "notes", "tags")}
        tags = [part for part in values["tags"].split(",") if part.strip()]
        try:
            labels.set_labels(run, labels.Labels(name=values["name"], notes=values["notes"], tags=tags))
        except labels.LabelsRefused as exc:
            errors = exc.errors
        else:
            if not inline:
                return redirect("web:run-detail", pk=run.pk)
            return render(request, "web/runs/_labels.html", labels_context(request, run))
    template = "web/runs/_labels_form.html" if inline else "web/runs/labels_edit.html"
    return render(request, template, {"run": run, "values": values, "errors": errors}, status=400 if errors else 200)
