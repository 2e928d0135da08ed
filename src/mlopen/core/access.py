"""Who may call which view: every page and API route declares one policy.

Pages are decorated with ``@access(POLICY)``; API views name their ``permission_classes``
(mlopen.api.permissions). A test walks the whole URL conf and fails on any route that declares
nothing, and Django's LoginRequiredMiddleware keeps such a route closed to anonymous visitors
until it does.

The object policies (VIEW, MANAGE) are enforced where the object is looked up, through the
models' querysets: ``visible_to(user)`` for VIEW, ``manageable_by(user)`` for MANAGE. Both answer
404 for an object the user may not use, the same answer as for an object that does not exist.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_not_required, login_required
from django.core.exceptions import PermissionDenied

from mlopen.core.roles import can_upload_pipelines

PUBLIC = "public"  # anyone, signed in or not (health check, login page)
LOGGED_IN = "logged-in"  # any signed-in user; what it lists is filtered by visible_to
VIEW = "view"  # an object the user may see: their own, shared with them, or any for an admin; else 404
MANAGE = "manage"  # an object the user owns (or any, for an admin); else 404
AUTHOR = "author"  # the author or admin role; else 403
ADMIN = "admin"  # the admin role; else 403

POLICIES = (PUBLIC, LOGGED_IN, VIEW, MANAGE, AUTHOR, ADMIN)


def _role_check(view, allowed, message: str):
    @wraps(view)
    def checked(request, *args, **kwargs):
        if not allowed(request.user):
            raise PermissionDenied(message)
        return view(request, *args, **kwargs)

    return checked


def access(policy: str):
    """Declare (and enforce the login and role part of) who may call a page view."""
    if policy not in POLICIES:
        raise ValueError(f"unknown access policy {policy!r}; use one of {', '.join(POLICIES)}")

    def decorate(view):
        if policy == PUBLIC:
            wrapped = login_not_required(view)
        else:
            if policy == AUTHOR:
                view = _role_check(view, can_upload_pipelines, "This needs the author or admin role.")
            elif policy == ADMIN:
                view = _role_check(view, lambda user: user.is_superuser, "This needs the admin role.")
            wrapped = login_required(view)
        wrapped.access_policy = policy
        return wrapped

    return decorate


def policy_of(callback) -> str | None:
    """The policy a URL's callback declares, or None (a route nobody thought about)."""
    return getattr(callback, "access_policy", None)


class NoStoreMiddleware:
    """What a signed-in user is sent is never kept by a browser or a shared cache (``Cache-Control:
    no-store``): pages, API answers, downloads. Static files are answered before this by WhiteNoise;
    the public pages (login, health) are sent as before."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        # DRF sets the token's user on the underlying request too, so API answers are covered.
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            response["Cache-Control"] = "no-store"
        return response
