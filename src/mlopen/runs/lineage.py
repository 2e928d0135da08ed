"""A trained model's lineage both ways: the training run it came from, and the runs that used it.

What a model records of its training (input, parameters, metrics, packages) is copied from its
training run when it is stored (:func:`training_record`), so it outlives that run. Who may read it:
those who may see the training run, and those who may change the pipeline (its owner, maintainers,
admins: they answer for the models everyone's runs use). Others see the model, not its training.
"""

from __future__ import annotations

from django.db.models import QuerySet

from mlopen.datasets import schemas
from mlopen.pipelines import rules as pipeline_rules
from mlopen.pipelines.models import TrainedModel
from mlopen.runs.models import Run, RunMetric


def training_record(run: Run, pending_metrics: list[RunMetric], environment: dict | None) -> dict:
    """The fields of a TrainedModel that say how ``run`` trained it (input, parameters, metrics, packages).

    ``pending_metrics`` are the run's metrics not yet written (they go with its final write).
    """
    last: dict[str, float | None] = {}
    for name, value in RunMetric.objects.filter(run_id=run.pk).order_by("step", "id").values_list("name", "value"):
        last[name] = value
    for metric in pending_metrics:
        last[metric.name] = metric.value
    dataset = run.input
    return {
        "input_name": (dataset.name if dataset else run.input_name)[:200],
        "input_sha256": dataset.sha256 if dataset else "",
        "input_schema": schemas.schema_of(dataset) if dataset is not None and schemas.is_tabular(dataset) else None,
        "train_params": run.params or {},
        "metrics": last,
        "environment": environment
        if environment is not None
        else (Run.objects.filter(pk=run.pk).values_list("environment", flat=True).first() or {}),
    }


def can_see_training(user, model: TrainedModel) -> bool:
    if pipeline_rules.can_download_models(user, model.pipeline):  # its owner, maintainers, admins
        return True
    return model.run_id is not None and Run.objects.visible_to(user).filter(pk=model.run_id).exists()


def runs_using(user, model: TrainedModel) -> QuerySet[Run]:
    """The runs ``user`` may see that used ``model``, newest first."""
    return (
        Run.objects.visible_to(user)
        .filter(trained_model=model, kind=Run.Kind.RUN)
        .select_related("owner", "version")
        .order_by("-created_at", "-id")
    )
