"""Who may do what to a pipeline: the one place pages, the API and the services ask.

- **See it**: every logged-in user, unless it is private to a group (``PipelineQuerySet.visible_to``).
- **Publish a new version, or change its settings** (visibility, limits, queue, network, its
  requirements): its owner (``created_by``), the maintainers the owner names, and admins; always
  with the author role (admins have it). Everyone who runs a pipeline runs the newest version's
  code on their data, so a newcomer must not be able to publish one under its name.
- **Move its model aliases** (``production``...): the same people (mlopen.pipelines.registry).
- **Download its trained models**: its owner, its maintainers and admins (no role needed).
- **Name its maintainers**: its owner and admins (a maintainer cannot add more maintainers).

The querysets say *which* pipelines (``manageable_by``); these functions say yes or no for one,
and the refusals below say who may do it instead.
"""

from __future__ import annotations

from mlopen.core.roles import can_upload_pipelines
from mlopen.pipelines.models import Pipeline


def can_see(user, pipeline: Pipeline) -> bool:
    return Pipeline.objects.visible_to(user).filter(pk=pipeline.pk).exists()


def can_publish(user, pipeline: Pipeline) -> bool:
    """May ``user`` publish a new version of ``pipeline``?"""
    if not can_upload_pipelines(user):
        return False
    return user.is_superuser or Pipeline.objects.manageable_by(user).filter(pk=pipeline.pk).exists()


def can_manage(user, pipeline: Pipeline) -> bool:
    """May ``user`` change ``pipeline``'s settings? The same people who may publish its versions."""
    return can_publish(user, pipeline)


def can_name_maintainers(user, pipeline: Pipeline) -> bool:
    return can_upload_pipelines(user) and (user.is_superuser or pipeline.created_by_id == user.pk)


def can_download_models(user, pipeline: Pipeline) -> bool:
    """May ``user`` download ``pipeline``'s trained models (their pickled objects, for use outside
    mlopen)? Its owner, its maintainers and admins: a model may hold what it was trained on."""
    return user.is_authenticated and (
        user.is_superuser or Pipeline.objects.manageable_by(user).filter(pk=pipeline.pk).exists()
    )


def alias_refusal(pipeline: Pipeline) -> str:
    return f"Only the owner of pipeline {pipeline.name!r}, its maintainers and admins can move its model aliases."


def publish_refusal(pipeline: Pipeline) -> str:
    return f"Only the owner of pipeline {pipeline.name!r}, its maintainers and admins can publish a new version."


def manage_refusal(pipeline: Pipeline) -> str:
    return f"Only the owner of pipeline {pipeline.name!r}, its maintainers and admins can change its settings."


def maintainers_refusal(pipeline: Pipeline) -> str:
    return f"Only the owner of pipeline {pipeline.name!r} and admins can change its maintainers."


def name_taken(name: str) -> str:
    """The refusal for a name held by a pipeline the user cannot see. Names are unique, so that it is
    taken cannot be hidden; that a private pipeline holds it (and what it is) is not said."""
    return f"The name {name!r} is taken; choose another."
