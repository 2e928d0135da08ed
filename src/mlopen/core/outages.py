"""Answers for the failures a request cannot fix: the database unreachable (503) and a full disk (507).

One place decides how they are answered, for the API (its JSON body, {"detail", "errors"}) and for
pages (a plain page), instead of Django's HTML 500:

- OutageMiddleware.process_exception, for what a view raises (API views re-raise what DRF's
  handler leaves alone, so they come here too);
- server_error, the project's handler500, for what fails before a view runs: the session or the
  user read in middleware is the first query of a page, and the first to meet a lost database.

Only a lost or refused connection counts as the database being unavailable (OperationalError,
InterfaceError); an IntegrityError or DataError is a bug and stays a 500.
"""

from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import defaults

from mlopen.core import storage
from mlopen_runner.job import is_disk_full

log = logging.getLogger(__name__)

# A blip (a restart, a failover) is over in seconds; a client that honours this tries once more.
RETRY_AFTER_SECONDS = 10
DATABASE_UNAVAILABLE = (
    "The database is unavailable right now, so this request could not be completed. Please try again in a moment."
)
INSUFFICIENT_STORAGE = 507


def classify(exc: BaseException | None) -> tuple[int, str] | None:
    """(status, message) for an outage, None for anything else."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return 503, DATABASE_UNAVAILABLE
    if exc is not None and is_disk_full(exc):
        return INSUFFICIENT_STORAGE, storage.full_message()
    return None


def wants_json(request: HttpRequest) -> bool:
    """The API, or a client that asked for JSON, gets the API's error body; anyone else a page."""
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def response_for(request: HttpRequest, exc: BaseException | None) -> HttpResponse | None:
    """The answer to `exc` if it is an outage, else None (the caller answers as it would have)."""
    known = classify(exc)
    if known is None:
        return None
    status, message = known
    # Still an error for whoever runs the server: the traceback says which query or write failed.
    log.error("%s %s answered %s: %s", request.method, request.path, status, exc, exc_info=exc)
    if wants_json(request):
        response: HttpResponse = JsonResponse({"detail": message, "errors": {}}, status=status)
    else:
        # A page of its own, not web/base.html: that one reads the user, from the database.
        page = render_to_string("core/unavailable.html", {"message": message, "status": status})
        response = HttpResponse(page, status=status)
    if status == 503:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class OutageMiddleware:
    """Last in MIDDLEWARE, so its process_exception is the first to see what a view raised."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        return response_for(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: Django calls it while handling the exception, so sys.exc_info() holds it."""
    return response_for(request, sys.exc_info()[1]) or defaults.server_error(request)
