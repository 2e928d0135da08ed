"""Sharing a dataset or a run: with everyone who can log in, or with groups.

Both models carry ``shared_with_all`` and ``shared_groups``; their ``visible_to`` querysets read
them. Sharing is read access only. Callers check that the user manages the object (owner or
admin) before calling ``set_sharing``; this module checks which groups they may name.
"""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import transaction

from mlopen.core.roles import ROLES


class SharingRefused(ValueError):
    def __init__(self, message: str, field: str = "groups"):
        super().__init__(message)
        self.message = message
        self.field = field


def shareable_groups(user):
    """The groups ``user`` may share with: the ones they belong to (admins: every group).

    The role groups (admin, author, user) are left out: they grant permissions, they are not
    teams, and "everyone" is its own choice.
    """
    groups = Group.objects.exclude(name__in=ROLES).order_by("name")
    return groups if user.is_superuser else groups.filter(user=user)


def sharing_of(obj) -> dict:
    return {"everyone": obj.shared_with_all, "groups": sorted(obj.shared_groups.values_list("name", flat=True))}


def _groups_named(user, refs) -> list[Group]:
    allowed = shareable_groups(user)
    found = []
    for ref in refs:
        query = (
            allowed.filter(pk=int(ref))
            if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit())
            else allowed.filter(name=ref)
        )
        group = query.first()
        if group is None:
            raise SharingRefused(f"You can share only with groups you belong to; {str(ref)[:80]!r} is not one of them.")
        found.append(group)
    return found


def set_sharing(
    obj,
    user,
    *,
    everyone: bool | None = None,
    groups: list | None = None,
    add_groups: list | None = None,
    remove_groups: list | None = None,
) -> dict:
    """Change who sees ``obj``. ``groups`` replaces the shared groups; ``add_groups`` and
    ``remove_groups`` (group ids) change them; ``None`` leaves that part as it was. Only groups
    ``user`` belongs to can be added. Returns the new state as ``sharing_of`` does."""
    replace = _groups_named(user, groups) if groups is not None else None
    extra = _groups_named(user, add_groups) if add_groups else []
    with transaction.atomic():
        if everyone is not None and everyone != obj.shared_with_all:
            obj.shared_with_all = everyone
            obj.save(update_fields=["shared_with_all"])
        if replace is not None:
            obj.shared_groups.set(replace)
        if extra:
            obj.shared_groups.add(*extra)
        if remove_groups:
            obj.shared_groups.remove(*Group.objects.filter(pk__in=remove_groups))
    return sharing_of(obj)


def stop_sharing(obj) -> dict:
    with transaction.atomic():
        obj.shared_with_all = False
        obj.save(update_fields=["shared_with_all"])
        obj.shared_groups.clear()
    return sharing_of(obj)
