"""The model registry: which of a pipeline's trained models a run uses, and the aliases that say so.

A run uses the model it names (by id or alias), else the model of the pipeline's ``production``
alias, else the newest. An alias points to one model at a time; whoever may change the pipeline
(mlopen.pipelines.rules.can_manage: its owner, maintainers, admins) moves it, and every move is
kept (ModelAliasChange) with who and when, so a rollback is one move back.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, transaction

from mlopen.core import prepared
from mlopen.pipelines import rules
from mlopen.pipelines.control import PipelineForbidden, PipelineRejected
from mlopen.pipelines.models import ModelAlias, ModelAliasChange, Pipeline, TrainedModel

PRODUCTION = "production"
MAX_ALIAS_LENGTH = 64
MAX_ALIASES_PER_MODEL = 20


def default_model(pipeline: Pipeline) -> tuple[TrainedModel | None, str]:
    """The model a run that names none uses, and the alias it came through ("" for the newest)."""
    alias = _PRODUCTION_ALIAS.first(pipeline_id=pipeline.pk)
    if alias is not None:
        return alias.model, PRODUCTION
    newest = _NEWEST_MODEL.first(pipeline_id=pipeline.pk)
    if newest is not None:
        newest.pipeline = pipeline  # as the related manager would have set it: no query to read it back
    return newest, ""


# Every run that names no model asks both: compiled once (mlopen.core.prepared).
_PIPELINE_STAND_IN = -2_000_000_123
_PRODUCTION_ALIAS = prepared.Compiled(
    lambda pipeline_id: (
        ModelAlias.objects.filter(pipeline_id=pipeline_id, name=PRODUCTION).select_related("model").order_by()[:1]
    ),
    pipeline_id=_PIPELINE_STAND_IN,
)
_NEWEST_MODEL = prepared.Compiled(
    lambda pipeline_id: TrainedModel.objects.filter(pipeline_id=pipeline_id).order_by("-number")[:1],
    pipeline_id=_PIPELINE_STAND_IN,
)


def resolve_model(pipeline: Pipeline, ref, user=None) -> tuple[TrainedModel, str]:
    """A model of ``pipeline`` by id or alias, and the alias it was named by ("" for an id).

    Refused (field ``model``) for an unknown id or alias and for a model of another pipeline.
    """
    if isinstance(ref, bool) or ref is None or (isinstance(ref, str) and not ref.strip()):
        raise PipelineRejected("Name the model by its id or an alias such as 'production'.", field="model")
    text = str(ref).strip()
    if isinstance(ref, int) or (text.isascii() and text.isdigit()):
        if len(text) > 18:
            raise PipelineRejected(f"There is no model {text[:40]}.", field="model")
        model = TrainedModel.objects.filter(pk=int(text)).select_related("pipeline").first()
        # A model of a pipeline ``user`` cannot see is as unknown as one that does not exist.
        if model is None or (
            model.pipeline_id != pipeline.pk and user is not None and not rules.can_see(user, model.pipeline)
        ):
            raise PipelineRejected(f"There is no model {text}.", field="model")
        if model.pipeline_id != pipeline.pk:
            raise PipelineRejected(
                f"Model {model.pk} is a model of pipeline {model.pipeline.name!r}, not of {pipeline.name!r}.",
                field="model",
            )
        return model, ""
    alias = ModelAlias.objects.filter(pipeline=pipeline, name=text[:MAX_ALIAS_LENGTH]).select_related("model").first()
    if alias is None or len(text) > MAX_ALIAS_LENGTH:
        known = list(ModelAlias.objects.filter(pipeline=pipeline).values_list("name", flat=True))
        hint = f" Its aliases: {', '.join(known)}." if known else " It has no aliases yet."
        raise PipelineRejected(
            f"Pipeline {pipeline.name!r} has no model alias {text[:64]!r}.{hint} Give a model id or an alias.",
            field="model",
        )
    return alias.model, alias.name


def validate_aliases(names) -> list[str]:
    """Alias names as given, checked: a list of slugs of at most 64 characters (field ``aliases``)."""
    if not isinstance(names, (list, tuple)):
        raise PipelineRejected('Send aliases as a list of names, such as ["production"].', field="aliases")
    if len(names) > MAX_ALIASES_PER_MODEL:
        raise PipelineRejected(f"A model can have at most {MAX_ALIASES_PER_MODEL} aliases.", field="aliases")
    wanted = []
    for name in names:
        text = name.strip() if isinstance(name, str) else name
        try:
            if not isinstance(text, str) or not text or len(text) > MAX_ALIAS_LENGTH:
                raise ValidationError("bad")
            validate_slug(text)
        except ValidationError:
            shown = repr(text)[:70]
            raise PipelineRejected(
                f"Alias {shown} is not a slug: use 1-{MAX_ALIAS_LENGTH} letters, digits, '-' and '_' "
                "(such as production or staging).",
                field="aliases",
            ) from None
        if text not in wanted:
            wanted.append(text)
    return wanted


def set_aliases(user, model: TrainedModel, names) -> TrainedModel:
    """Make ``names`` exactly the aliases of ``model``: each is moved here from whichever model had it,
    and this model's other aliases are removed. Each change is recorded with who and when."""
    pipeline = model.pipeline
    if not rules.can_manage(user, pipeline):
        raise PipelineForbidden(rules.alias_refusal(pipeline))
    wanted = validate_aliases(names)
    with transaction.atomic():
        for alias in ModelAlias.objects.select_for_update().filter(model=model).exclude(name__in=wanted):
            _record(pipeline, alias.name, model, None, user)
            alias.delete()
        for name in wanted:
            _point(user, pipeline, name, model)
    return model


def move_alias(user, model: TrainedModel, name: str) -> ModelAlias:
    """Point one alias at ``model`` (a promotion, or a rollback to an earlier model); others stay."""
    pipeline = model.pipeline
    if not rules.can_manage(user, pipeline):
        raise PipelineForbidden(rules.alias_refusal(pipeline))
    (name,) = validate_aliases([name])
    with transaction.atomic():
        return _point(user, pipeline, name, model)


def remove_alias(user, model: TrainedModel, name: str) -> None:
    pipeline = model.pipeline
    if not rules.can_manage(user, pipeline):
        raise PipelineForbidden(rules.alias_refusal(pipeline))
    with transaction.atomic():
        alias = ModelAlias.objects.select_for_update().filter(pipeline=pipeline, name=name, model=model).first()
        if alias is None:
            raise PipelineRejected(f"Model #{model.number} has no alias {name[:64]!r}.", field="aliases")
        _record(pipeline, name, model, None, user)
        alias.delete()


def _point(user, pipeline: Pipeline, name: str, model: TrainedModel) -> ModelAlias:
    alias = ModelAlias.objects.select_for_update().filter(pipeline=pipeline, name=name).first()
    if alias is None:
        try:
            with transaction.atomic():  # a savepoint: the same alias may be created at the same moment
                alias = ModelAlias.objects.create(pipeline=pipeline, name=name, model=model, set_by=user)
        except IntegrityError:
            alias = ModelAlias.objects.select_for_update().get(pipeline=pipeline, name=name)
        else:
            _record(pipeline, name, None, model, user)
            return alias
    if alias.model_id != model.pk:
        _record(pipeline, name, alias.model, model, user)
        alias.model, alias.set_by = model, user
        alias.save(update_fields=["model", "set_by", "set_at"])
    return alias


def _record(pipeline, name, from_model, to_model, user) -> None:
    ModelAliasChange.objects.create(
        pipeline=pipeline, name=name, from_model=from_model, to_model=to_model, changed_by=user
    )


def aliases_of(model: TrainedModel) -> list[str]:
    return sorted(alias.name for alias in model.aliases.all())


def history(pipeline: Pipeline, limit: int = 50):
    """The pipeline's latest alias moves, newest first."""
    return ModelAliasChange.objects.filter(pipeline=pipeline).select_related("from_model", "to_model", "changed_by")[
        :limit
    ]
