"""Who besides its owner may publish a pipeline's versions: the maintainers its owner names.

A maintainer needs the author role to publish (mlopen.pipelines.rules); a private pipeline is
visible to its maintainers too.
"""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model

from mlopen.core.roles import can_upload_pipelines
from mlopen.pipelines import rules
from mlopen.pipelines.models import Pipeline
from mlopen.pipelines.services import PipelineForbidden, PipelineRejected

MAX_MAINTAINERS = 50


def parse_usernames(text: str) -> list[str]:
    """'ada, bob carol' -> ['ada', 'bob', 'carol']: what the web form's one text field holds."""
    return [name for name in re.split(r"[\s,;]+", text or "") if name]


def set_maintainers(pipeline: Pipeline, user, usernames: list[str]) -> Pipeline:
    """Make exactly ``usernames`` the maintainers of ``pipeline`` (an empty list removes them all)."""
    if not rules.can_name_maintainers(user, pipeline):
        raise PipelineForbidden(rules.maintainers_refusal(pipeline))
    wanted = list(dict.fromkeys(name.strip() for name in usernames if name and name.strip()))
    if len(wanted) > MAX_MAINTAINERS:
        raise PipelineRejected(f"A pipeline can have at most {MAX_MAINTAINERS} maintainers.", field="maintainers")
    found = {
        person.get_username(): person for person in get_user_model().objects.filter(username__in=wanted, is_active=True)
    }
    # One answer for "no such user" and "not an author": the form is not a way to list accounts.
    refused = [name for name in wanted if name not in found or not can_upload_pipelines(found[name])]
    if refused:
        names = ", ".join(repr(name[:150]) for name in refused[:5])
        raise PipelineRejected(
            f"Not an author who can maintain pipelines: {names}. A maintainer needs the author role.",
            field="maintainers",
        )
    # The owner may already do everything a maintainer may.
    pipeline.maintainers.set([person for person in found.values() if person.pk != pipeline.created_by_id])
    pipeline.save(update_fields=["updated_at"])
    return pipeline
