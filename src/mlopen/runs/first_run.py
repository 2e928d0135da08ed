"""A first run that cannot go wrong: the dataset the run form starts from, the example a pipeline's
author offers, and what keeps Start from being pressed (a needed model or input that is missing).

Pages and the API read these; ``runs.services.submit_run`` refuses what they warn about.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlopen.datasets.models import Dataset
from mlopen.pipelines import rules as pipeline_rules
from mlopen.pipelines.control import PipelineForbidden, PipelineRejected
from mlopen.pipelines.models import Pipeline, PipelineVersion, TrainedModel
from mlopen.runs.models import PipelineExample, Run


class ModelNeed:
    """Whether a run of a pipeline is missing a trained model."""

    NONE = "none"  # it has one, it is a training, or its code saves none (it needs none)
    MISSING = "missing"  # its code saves a model, and none was trained yet: train it first
    UNKNOWN = "unknown"  # no model, and whether it needs one is not known (a version stored before this was read)


def model_need(version: PipelineVersion | None, kind: str, current_model: TrainedModel | None) -> str:
    if version is None or kind != Run.Kind.RUN or current_model is not None:
        return ModelNeed.NONE
    if version.saves_model is None:
        return ModelNeed.UNKNOWN
    return ModelNeed.MISSING if version.saves_model else ModelNeed.NONE


def input_missing_message(pipeline: Pipeline) -> str:
    return f"{pipeline.name} needs an input dataset: choose one of your datasets or upload a file."


TRAIN_FIRST = "This pipeline needs a trained model and has none yet: train it first."


@dataclass(frozen=True)
class StartState:
    """What the run form shows about Start: disabled for ``blocker`` (a reason in words) when set."""

    model_need: str
    input_required: bool
    blocker: str = ""


def start_state(pipeline: Pipeline | None, version, kind: str, current_model) -> StartState:
    if pipeline is None or version is None:
        return StartState(ModelNeed.NONE, False)
    need = model_need(version, kind, current_model)
    return StartState(need, pipeline.input_required, TRAIN_FIRST if need == ModelNeed.MISSING else "")


def example_for(user, pipeline: Pipeline, kind: str) -> Dataset | None:
    """The example dataset the pipeline's author set for ``kind``, if ``user`` may use it."""
    example = PipelineExample.objects.filter(pipeline=pipeline, kind=kind).values_list("dataset_id", flat=True).first()
    return Dataset.objects.visible_to(user).filter(pk=example).first() if example else None


def suggested_input(user, pipeline: Pipeline | None, kind: str) -> Dataset | None:
    """The dataset the run form preselects: the one ``user`` last gave this pipeline for the same kind
    (if they may still use it), else the pipeline's example for that kind."""
    if pipeline is None:
        return None
    last = (
        Run.objects.filter(owner=user, pipeline=pipeline, kind=kind, input__isnull=False)
        .order_by("-created_at", "-pk")
        .values_list("input_id", flat=True)
        .first()
    )
    if last is not None:
        dataset = Dataset.objects.visible_to(user).filter(pk=last).first()
        if dataset is not None:
            return dataset
    return example_for(user, pipeline, kind)


def examples_of(user, pipeline: Pipeline) -> dict[str, Dataset]:
    """The pipeline's examples ``user`` may use, by kind."""
    visible = Dataset.objects.visible_to(user)
    return {
        example.kind: example.dataset
        for example in PipelineExample.objects.filter(pipeline=pipeline, dataset__in=visible).select_related("dataset")
    }


def set_example(user, pipeline: Pipeline, kind: str, dataset_id: int | None) -> Dataset | None:
    """Whoever may publish the pipeline sets (or, with None, removes) its example dataset for ``kind``.

    The dataset must be one the setter can see; it is offered to those who can see it too (a demo
    dataset, or one shared with everyone, is offered to all).
    """
    if not pipeline_rules.can_manage(user, pipeline):
        raise PipelineForbidden(pipeline_rules.manage_refusal(pipeline))
    if kind not in Run.Kind.values:
        raise PipelineRejected(f"kind must be 'train' or 'run', not {kind!r}.", field="kind")
    if dataset_id is None:
        PipelineExample.objects.filter(pipeline=pipeline, kind=kind).delete()
        return None
    dataset = Dataset.objects.visible_to(user).filter(pk=dataset_id).first()
    if dataset is None:
        raise PipelineRejected(f"There is no dataset {dataset_id} you can use.", field="dataset")
    PipelineExample.objects.update_or_create(
        pipeline=pipeline, kind=kind, defaults={"dataset": dataset, "set_by": user}
    )
    return dataset
