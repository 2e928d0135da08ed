"""Roles are Django groups: admin (everything), author (uploads pipelines), user (datasets and runs)."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

ROLES = ("admin", "author", "user")
_AUTHOR_PERMISSIONS = ("pipelines.add_pipeline", "pipelines.change_pipeline", "pipelines.add_pipelineversion")


def ensure_roles() -> None:
    for role in ROLES:
        Group.objects.get_or_create(name=role)
    author = Group.objects.get(name="author")
    for dotted in _AUTHOR_PERMISSIONS:
        app_label, codename = dotted.split(".")
        permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
        if permission:
            author.permissions.add(permission)


def role_of(user) -> str:
    if user.is_superuser:
        return "admin"
    names = set(user.groups.values_list("name", flat=True))
    return "author" if "author" in names else "user"


def set_role(user, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    ensure_roles()
    user.groups.remove(*Group.objects.filter(name__in=ROLES))
    user.groups.add(Group.objects.get(name=role))
    user.is_superuser = user.is_staff = role == "admin"
    user.save(update_fields=["is_superuser", "is_staff"])


def can_upload_pipelines(user) -> bool:
    return user.is_authenticated and (user.is_superuser or user.has_perm("pipelines.add_pipeline"))
