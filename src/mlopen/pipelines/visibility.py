"""Who sees a pipeline: every logged-in user, or (when its author says so) one group's members.

A private pipeline stays visible to its author and to admins; runs already made of it stay
visible to whoever could see them (runs have their own sharing).
"""

from __future__ import annotations

from mlopen.core.numbers import parse_id
from mlopen.core.sharing import SharingRefused, shareable_groups
from mlopen.pipelines.models import Pipeline


def set_private_group(pipeline: Pipeline, user, group_ref) -> Pipeline:
    """Make ``pipeline`` private to a group ``user`` belongs to (by id or name), or public with None."""
    group = None
    if group_ref not in (None, ""):
        allowed = shareable_groups(user)
        ref = str(group_ref)
        group = (allowed.filter(pk=parse_id(ref)) if parse_id(ref) is not None else allowed.filter(name=ref)).first()
        if group is None:
            raise SharingRefused(
                f"A pipeline can be private only to a group you belong to; {ref[:80]!r} is not one.", field="group"
            )
    pipeline.private_group = group
    pipeline.save(update_fields=["private_group", "updated_at"])
    return pipeline
