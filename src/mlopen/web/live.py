"""Live fragments: what the pages poll (htmx, every few seconds) and how a poll that finds nothing
new costs one aggregate query and an empty 304.

A fragment's ETag is a digest of the runs it shows: how many there are, the latest creation, start
and finish, and how many are queued, running or being cancelled. Every change of a run's status
moves one of those (a claim sets started_at, every ending sets finished_at, a run put back to the
queue changes the counts), without a write of its own on the run path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db.models import Count, Max, Q

from mlopen.notifications import preferences
from mlopen.runs.models import Run

# Bump when a fragment's markup changes, so a page open across an upgrade gets the new one.
MARKUP_VERSION = "1"
POLL_SECONDS = 3


def runs_signature(runs) -> tuple:
    """What of ``runs`` (a queryset) a fragment shows changes with: one aggregate query."""
    found = runs.order_by().aggregate(
        count=Count("pk"),
        created=Max("created_at"),
        started=Max("started_at"),
        finished=Max("finished_at"),
        queued=Count("pk", filter=Q(status=Run.Status.QUEUED)),
        running=Count("pk", filter=Q(status=Run.Status.RUNNING)),
        cancelling=Count("pk", filter=Q(cancel_requested=True, status=Run.Status.RUNNING)),
    )
    return tuple(sorted(found.items()))


def etag_of(request, *parts) -> str:
    """The fragment's ETag (unquoted, as django.views.decorators.http.condition wants it), computed
    once per request: the view renders it into the page for the next poll's If-None-Match."""
    cached = getattr(request, "_mlopen_live_etag", None)
    if cached is not None:
        return cached
    text = repr((MARKUP_VERSION, request.user.pk, request.GET.urlencode(), *parts))
    request._mlopen_live_etag = hashlib.sha256(text.encode()).hexdigest()[:32]
    return request._mlopen_live_etag


def quoted(etag: str) -> str:
    return f'"{etag}"'


def mark_for_notifications(user, runs: Iterable[Run]) -> None:
    """Give each run its ``notify``: what the page does when it sees that run end (the browser
    choice of its owner for its pipeline; "off" for someone else's run)."""
    runs = list(runs)
    own = {run.pipeline_id for run in runs if run.owner_id == user.pk}
    choices = preferences.browser_choices(user, own) if own else {}
    for run in runs:
        run.notify = choices.get(run.pipeline_id, "off") if run.owner_id == user.pk else "off"
