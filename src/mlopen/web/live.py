"""Live fragments: what the pages poll (htmx, every few seconds) and how a poll that finds nothing
new costs a count, one page of ids and statuses, and an empty 304.

A fragment's ETag is a digest of what it shows: how many runs the user can see (the pager) and
the id, status and timestamps of the rows on its page, read with the list's own LIMIT query. Every
change of a run's status changes its row (a claim sets started_at, every ending finished_at, a run
put back to the queue its status), without a write of its own on the run path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from mlopen.notifications import preferences
from mlopen.runs.models import Run

# Bump when a fragment's markup changes, so a page open across an upgrade gets the new one.
MARKUP_VERSION = "1"


def page_signature(runs, page_number: int, per_page: int) -> tuple:
    """What one page of a run list shows changes with: how many runs there are (the pager) and the
    id, status and timestamps of the page's rows. Two small queries: a count, and one page read
    through the list's own index (created_at), instead of an aggregate over every run."""
    count = runs.count()
    pages = max(1, -(-count // per_page))
    page_number = min(max(1, page_number), pages)
    start = (page_number - 1) * per_page
    rows = runs.values_list("pk", "status", "cancel_requested", "started_at", "finished_at")[start : start + per_page]
    return (count, tuple(rows))


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
