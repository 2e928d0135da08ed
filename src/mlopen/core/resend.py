"""Re-sending messages a broker lost: the mechanics the workers' sweep uses for queued runs and
environment builds alike (which rows are due, taking them once among racing sweepers, sending them)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

log = logging.getLogger(__name__)

# How many lost messages one sweep re-sends at most, so a beat stays short even after a broker
# lost a long queue (the rest follow on the next beats).
REQUEUE_BATCH = 100


def due(sent_field: str, queue_field: str, horizons: dict) -> Q:
    """Never sent (the publish failed), or sent before the horizon of an idle worker of its queue."""
    wanted = Q(**{f"{sent_field}__isnull": True})
    default = settings.MLOPEN_DEFAULT_QUEUE
    for queue, horizon in horizons.items():
        in_queue = Q(**{queue_field: queue})
        if queue == default:  # a run or pipeline without a queue goes to the default one
            in_queue |= Q(**{queue_field: ""})
        wanted |= in_queue & Q(**{f"{sent_field}__lt": horizon})
    return wanted


def take_due(candidates, sent_field: str, fields: tuple[str, ...]) -> list[tuple]:
    """Stamp the due rows' ``sent_field`` with now and return them; of sweepers racing for a row
    only one gets it: PostgreSQL locks (and skips rows another sweeper holds, re-checking the
    condition on rows it changed meanwhile), SQLite's IMMEDIATE transactions run one at a time."""
    if not candidates.exists():  # no write (SQLite's write lock) when nothing is due, which is nearly always
        return []
    with transaction.atomic():
        rows = list(
            candidates.select_for_update(skip_locked=True, of=("self",))
            .order_by("created_at", "pk")
            .values_list("pk", *fields)[:REQUEUE_BATCH]
        )
        if rows:
            candidates.model.objects.filter(pk__in=[row[0] for row in rows]).update(**{sent_field: timezone.now()})
    return rows


def send(rows: list[tuple], publish, what: str) -> set[int]:
    """Publish each row's message. A broker that is down is logged once and not hammered: the rows
    stay stamped, so they are tried again by a later sweep, once a worker of their queue has sat
    idle for MLOPEN_REQUEUE_SECONDS (which it will, with nothing to take)."""
    sent: set[int] = set()
    failed: list[int] = []
    error = None
    for pk, queue, *_rest in rows:
        try:
            publish(pk, queue or settings.MLOPEN_DEFAULT_QUEUE)
            sent.add(pk)
        except Exception as exc:  # noqa: BLE001 - the broker is down: try the others later, not now
            failed.append(pk)
            error = exc
            break
    if error is not None:
        failed += [row[0] for row in rows if row[0] not in sent and row[0] not in failed]
        log.warning(
            "could not send the %s message of %s (%s: %s); a later sweep tries again",
            what,
            ", ".join(map(str, failed)),
            error.__class__.__name__,
            error,
        )
    return sent
