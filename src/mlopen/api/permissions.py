"""Who may call which API operation (see mlopen.core.access for the pages' side).

Every API view names its permission classes. Objects are found through ``visible_to`` querysets,
so another user's object is a 404; the operations that change an object (delete, cancel, share)
also need its owner or an admin, and answer 404 (not 403) to anyone else, colleagues it is shared
with included: the same answer as for an object that does not exist.
"""

from __future__ import annotations

from rest_framework import routers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated

# The actions of a viewset that change the object itself (rerun makes a new run of the caller's own).
MANAGE_ACTIONS = {"destroy", "cancel", "share", "update", "partial_update"}


class LoggedIn(IsAuthenticated):
    """Any user with a valid token or session; what they get is filtered by visible_to."""


class Public(AllowAny):
    """Anyone: the schema and its documentation pages."""


class OwnerOrAdminToChange(IsAuthenticated):
    """Reading needs the object to be visible (the queryset sees to that); changing it needs its owner."""

    def has_object_permission(self, request, view, obj) -> bool:
        if getattr(view, "action", None) not in MANAGE_ACTIONS or request.method in SAFE_METHODS:
            return True
        if request.user.is_superuser or getattr(obj, "owner_id", None) == request.user.pk:
            return True
        raise NotFound()


class ApiRootView(routers.APIRootView):
    permission_classes = [LoggedIn]
