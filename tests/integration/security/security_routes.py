"""Every route of the URL conf, with the policy its view declares (shared by the walk tests)."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from mlopen.core.access import policy_of


@dataclass(frozen=True)
class Route:
    pattern: str  # as written in the URL conf, e.g. "runs/<int:pk>/" or "api/v1/^runs/(?P<pk>[^/.]+)/$"
    name: str | None
    namespace: str | None
    callback: object
    groups: tuple[str, ...]  # the URL's named parameters

    @property
    def is_api(self) -> bool:
        return hasattr(self.callback, "cls") and issubclass(self.callback.cls, APIView)

    @property
    def methods(self) -> tuple[str, ...]:
        """The HTTP methods a viewset route maps to actions (empty for other views).

        DRF adds "head" to a GET route's mapping once it has served a request; HEAD is GET here.
        """
        return tuple(m for m in getattr(self.callback, "actions", None) or () if m not in ("head", "options"))

    @property
    def key(self) -> str:
        return f"{self.namespace}:{self.name}" if self.namespace else (self.name or self.callback.__name__)


def all_routes(include_admin: bool = False) -> list[Route]:
    def walk(patterns, prefix="", namespace=None, groups=()):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                inner_groups = groups + tuple(entry.pattern.regex.groupindex)
                yield from walk(
                    entry.url_patterns, prefix + str(entry.pattern), entry.namespace or namespace, inner_groups
                )
            elif isinstance(entry, URLPattern):
                yield Route(
                    prefix + str(entry.pattern),
                    entry.name,
                    namespace,
                    entry.callback,
                    groups + tuple(entry.pattern.regex.groupindex),
                )

    routes = list(walk(get_resolver().url_patterns))
    return routes if include_admin else [r for r in routes if r.namespace != "admin"]


def declared_permission(route: Route) -> str | None:
    """What a route declares: a page's access policy, or an API view's own permission classes.

    DRF falls back to the settings' default (IsAuthenticated) when a view names none; that is
    closed, but undeclared, and counts as nothing here.
    """
    if route.is_api:
        view = route.callback.cls
        initkwargs = getattr(route.callback, "initkwargs", {}) or {}
        declared = "permission_classes" in initkwargs or any(
            "permission_classes" in vars(klass) for klass in view.__mro__ if klass is not APIView
        )
        if not declared:
            return None
        return "+".join(permission.__name__ for permission in view.permission_classes)
    return policy_of(route.callback)
