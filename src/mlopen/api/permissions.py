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

from mlopen.datasets import rules as dataset_rules
from mlopen.datasets.models import Dataset
from mlopen.runs import rules as run_rules
from mlopen.runs.models import Run

# Each app's own rule for "may change this one" (its rules.py), the same the pages ask.
_CAN_MANAGE = {Dataset: dataset_rules.can_manage, Run: run_rules.can_manage}

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
        can_manage = _CAN_MANAGE.get(type(obj))
        if can_manage is not None and can_manage(request.user, obj):
            return True
        raise NotFound()


class ApiRootView(routers.APIRootView):
    permission_classes = [LoggedIn]
