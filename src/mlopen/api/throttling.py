"""API rate limits: DRF throttles for reads, writes and run submissions, per user (or per client
address for anonymous requests), and a cap on failed token authentications per client address.

The rates are settings (``MLOPEN_THROTTLE_RATES``, from the ``MLOPEN_THROTTLE_*`` variables), read
on every request, so a test can lower them with ``override_settings``. Counts live in Django's
cache: per web process with the default in-memory cache (``mlopen serve`` runs one), shared with
``MLOPEN_CACHE_URL=redis://...``. A refused request gets 429, a ``Retry-After`` header and a message
naming the limit (``mlopen.api.errors`` words it from what the throttle left on the request).
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.http import JsonResponse
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import SimpleRateThrottle

from mlopen.core.clients import client_address

# What each scope counts, and the variable that sets its rate (named in the 429's message).
SCOPES = {
    "user_read": ("reads (GET)", "MLOPEN_THROTTLE_USER_READ"),
    "anon_read": ("reads (GET) without a login", "MLOPEN_THROTTLE_ANON_READ"),
    "user_write": ("changes (POST, PUT, PATCH, DELETE)", "MLOPEN_THROTTLE_USER_WRITE"),
    "anon_write": ("changes (POST, PUT, PATCH, DELETE) without a login", "MLOPEN_THROTTLE_ANON_WRITE"),
    "user_submit": ("runs started", "MLOPEN_THROTTLE_USER_SUBMIT"),
    "failed_auth": ("failed token authentications from one address", "MLOPEN_THROTTLE_FAILED_AUTH"),
}


def describe(scope: str, rate: str) -> str:
    what, variable = SCOPES[scope]
    return f"{rate} {what} ({variable})"


class _Throttle(SimpleRateThrottle):
    """A rate from the settings, counted per user, or per client address without a login."""

    kind = ""  # read, write, submit

    def __init__(self):  # the rate is chosen per request (it depends on the login)
        pass

    def applies(self, request, view) -> bool:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        if not self.applies(request, view):
            return True
        who = "user" if request.user and request.user.is_authenticated else "anon"
        self.scope = f"{who}_{self.kind}"
        self.rate = settings.MLOPEN_THROTTLE_RATES.get(self.scope)
        if not self.rate:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        allowed = super().allow_request(request, view)
        if not allowed:
            request.throttled_by = describe(self.scope, self.rate)
        return allowed

    def get_cache_key(self, request, view) -> str:
        ident = f"u{request.user.pk}" if request.user and request.user.is_authenticated else client_address(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class ReadThrottle(_Throttle):
    kind = "read"

    def applies(self, request, view) -> bool:
        return request.method in SAFE_METHODS


class WriteThrottle(_Throttle):
    kind = "write"

    def applies(self, request, view) -> bool:
        return request.method not in SAFE_METHODS


class SubmitThrottle(_Throttle):
    """Runs started (a view names its submitting actions in ``submit_actions``); on top of writes."""

    kind = "submit"

    def applies(self, request, view) -> bool:
        return getattr(view, "action", None) in getattr(view, "submit_actions", ())


class FailedTokenThrottleMiddleware:
    """Caps failed token authentications per client address (``MLOPEN_THROTTLE_FAILED_AUTH``).

    A request to the API with an ``Authorization`` header that ends in 401 counts one failure for
    its address; past the rate, such requests from that address are answered 429 before their token
    is looked at, so guessing tokens is slow whatever authentication checks them. Requests without
    the header (a session) are not touched.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/") or "HTTP_AUTHORIZATION" not in request.META:
            return self.get_response(request)
        rate = settings.MLOPEN_THROTTLE_RATES.get("failed_auth")
        if not rate:
            return self.get_response(request)
        limit, period = ReadThrottle().parse_rate(rate)
        key = f"throttle_failed_auth_{client_address(request)}"
        now = time.time()
        failures = [moment for moment in cache.get(key, []) if moment > now - period]
        if len(failures) >= limit:
            wait = max(1, int(failures[0] + period - now) + 1)
            response = JsonResponse(
                {
                    "detail": f"Too many failed token authentications from your address: the limit is "
                    f"{describe('failed_auth', rate)}. Try again in {wait} s.",
                    "errors": {},
                    "retry_after": wait,
                },
                status=429,
            )
            response["Retry-After"] = str(wait)
            return response
        response = self.get_response(request)
        if response.status_code == 401:
            cache.set(key, [*failures, now], period)
        return response
