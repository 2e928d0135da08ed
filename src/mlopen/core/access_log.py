"""The web server's access log: one line per request, as it is answered.

    2026-12-06 21:58:03,114 127.0.0.1 ada "POST /api/v1/runs/ HTTP/1.1" 201 5321 23.4ms

The client's address is the one login lockouts and throttles count by (``clients.client_address``:
the socket's peer unless a configured proxy says otherwise), the user is who the request was
authenticated as (``-`` for nobody, or when no page asked), the size is the response's
``Content-Length`` (``-`` for a streamed download) and the time is until the response was handed to
the server: a streamed download's bytes go out after it.

Written by hand rather than with Paste's ``TransLogger``, the middleware waitress's documentation
points to: that one logs no duration and no user, and takes ``X-Forwarded-For`` at its word.
``MLOPEN_ACCESS_LOG`` chooses where the lines go (mlopen.config.access_log_handler).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl, quote, urlencode

from django.utils.functional import empty

from mlopen.core.clients import client_address

log = logging.getLogger("mlopen.access")

# Query parameters whose values never reach the log (none of mlopen's own carry a secret today;
# a link pasted from elsewhere might).
_SECRET_PARAMETERS = frozenset({"token", "access_token", "key", "api_key", "password", "secret", "signature"})


def _user_name(request) -> str:
    user = request.__dict__.get("user")
    # Sessions resolve the user lazily: a request that never asked (static files, /healthz) costs
    # no query here either.
    wrapped = getattr(user, "_wrapped", user)
    if wrapped is None or wrapped is empty or not getattr(wrapped, "is_authenticated", False):
        return "-"
    return wrapped.get_username() or "-"


def _target(request) -> str:
    """The path and query as sent (percent-encoded again: a decoded newline cannot start a forged
    line), with the values of secret-looking parameters hidden."""
    path = quote(request.path, safe="/:@!$&'()*+,;=~")
    query = request.META.get("QUERY_STRING", "")
    if not query:
        return path
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(name.lower() in _SECRET_PARAMETERS for name, _value in pairs):
        query = urlencode(
            [(name, "***" if name.lower() in _SECRET_PARAMETERS else value) for name, value in pairs], safe="*"
        )
    return f"{path}?{quote(query, safe='/:@!$&()*+,;=~?%')}"


class AccessLogMiddleware:
    """Second in MIDDLEWARE, after the forwarded headers are judged: times all the rest."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not log.isEnabledFor(logging.INFO):
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        log.info(
            '%s %s "%s %s %s" %s %s %.1fms',
            client_address(request) or "-",
            _user_name(request),
            request.method,
            _target(request),
            request.META.get("SERVER_PROTOCOL", "HTTP/1.1"),
            response.status_code,
            response.get("Content-Length", "-"),
            (time.perf_counter() - started) * 1000,
        )
        return response
