"""A trained model's page: what it is, how it was trained, which runs used it, its aliases.

Readable by whoever sees the pipeline; its training's details by whoever may see the training
run or keep the pipeline (mlopen.runs.lineage); aliases are moved by the pipeline's owner,
maintainers and admins (mlopen.pipelines.registry), each move kept with who and when.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from mlopen.core.access import VIEW, access
from mlopen.core.paging import KeysFirstPaginator
from mlopen.pipelines import registry, rules
from mlopen.pipelines.control import PipelineForbidden, PipelineRejected
from mlopen.pipelines.models import Pipeline, TrainedModel
from mlopen.runs import lineage
from mlopen.runs.models import Run

RUNS_PER_PAGE = 20


def _model(request, pk: int, model_id: int) -> TrainedModel:
    pipeline = get_object_or_404(Pipeline.objects.visible_to(request.user), pk=pk)
    return get_object_or_404(
        TrainedModel.objects.select_related("pipeline", "version", "run", "run__owner").prefetch_related(
            "aliases__set_by"
        ),
        pipeline=pipeline,
        pk=model_id,
    )


@access(VIEW)
def model_detail(request, pk: int, model_id: int):
    model = _model(request, pk, model_id)
    pipeline = model.pipeline
    runs = KeysFirstPaginator(lineage.runs_using(request.user, model), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    training_visible = lineage.can_see_training(request.user, model)
    packages = sorted((model.environment.get("packages") or {}).items()) if training_visible else []
    return render(
        request,
        "web/pipelines/model.html",
        {
            "pipeline": pipeline,
            "model": model,
            "aliases": sorted(model.aliases.all(), key=lambda alias: alias.name),
            "current": registry.default_model(pipeline)[0],
            "training_visible": training_visible,
            "training_run_visible": training_visible
            and model.run_id is not None
            and Run.objects.visible_to(request.user).filter(pk=model.run_id).exists(),
            "packages": packages,
            "runs": runs,
            "alias_names": [alias.name for alias in model.aliases.all()],
            "history": _history(pipeline),
            "may_move": rules.can_manage(request.user, pipeline),
            "may_download": rules.can_download_models(request.user, pipeline),
        },
    )


def _history(pipeline: Pipeline) -> list:
    """The latest alias moves; the newest move of each alias that still holds offers its rollback."""
    pointing = dict(pipeline.model_aliases.values_list("name", "model_id"))
    changes, seen = list(registry.history(pipeline, limit=20)), set()
    for change in changes:
        change.rollback = (
            change.name not in seen
            and change.from_model is not None
            and pointing.get(change.name) == change.to_model_id
        )
        seen.add(change.name)
    return changes


@access(VIEW)
@require_POST
def model_alias(request, pk: int, model_id: int):
    """Set (``action=set``) or remove (``action=remove``) one alias of this model; a rollback is a set
    on an earlier model."""
    model = _model(request, pk, model_id)
    name = (request.POST.get("name") or "").strip()
    try:
        if request.POST.get("action") == "remove":
            registry.remove_alias(request.user, model, name)
            messages.success(request, f"Alias {name} removed from model #{model.number}.")
        else:
            registry.move_alias(request.user, model, name)
            messages.success(request, f"{name} now points to model #{model.number}.")
    except PipelineForbidden as exc:
        raise PermissionDenied(exc.message) from None
    except PipelineRejected as exc:
        messages.error(request, exc.message)
    return redirect("web:model-detail", pk=pk, model_id=model.pk)
