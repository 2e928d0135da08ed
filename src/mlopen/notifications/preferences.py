"""Notification preferences: what a user chose, globally or for one pipeline, and what that means
for one finished run. The per-pipeline row, when there is one, wins over the user's default."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q

from mlopen.notifications.models import DEFAULT_BROWSER, DEFAULT_EMAIL, NotificationPreference
from mlopen.pipelines.models import Pipeline

CHOICES = tuple(NotificationPreference.Choice.values)


class PreferenceRejected(Exception):
    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Effective:
    email: str
    browser: str
    pipeline_id: int | None  # the row that decided: a pipeline's, or None for the default (or none)


def effective(user_id: int, pipeline_id: int | None) -> Effective:
    """The preference that applies to ``user_id``'s runs of ``pipeline_id``: one query."""
    rows = {
        row.pipeline_id: row
        for row in NotificationPreference.objects.filter(user_id=user_id).filter(
            Q(pipeline__isnull=True) | Q(pipeline_id=pipeline_id)
        )
    }
    row = rows.get(pipeline_id) or rows.get(None)
    if row is None:
        return Effective(DEFAULT_EMAIL, DEFAULT_BROWSER, None)
    return Effective(row.email, row.browser, row.pipeline_id)


def browser_choices(user, pipeline_ids: Iterable[int]) -> dict[int, str]:
    """pipeline id → the browser choice of ``user`` for their runs of it (one query, for lists)."""
    wanted = set(pipeline_ids)
    rows = {
        row.pipeline_id: row.browser
        for row in NotificationPreference.objects.filter(user=user).filter(
            Q(pipeline__isnull=True) | Q(pipeline_id__in=wanted)
        )
    }
    default = rows.get(None, DEFAULT_BROWSER)
    return {pipeline_id: rows.get(pipeline_id, default) for pipeline_id in wanted}


def _pipeline_of(user, ref) -> Pipeline | None:
    if ref is None or ref == "":
        return None
    query = Pipeline.objects.visible_to(user)
    found = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit()):
        number = int(ref)
        # Past a 64-bit id no row can match, and the database would refuse the number itself.
        found = query.filter(pk=number).first() if 0 < number < 2**63 else None
    if found is None and isinstance(ref, str):
        found = query.filter(name=ref).first()
    if found is None:
        raise PreferenceRejected(f"There is no pipeline {ref!r}.", "pipeline")
    return found


def _checked(value, field: str, current: str) -> str:
    if value is None:
        return current
    if value not in CHOICES:
        raise PreferenceRejected(f"{field} must be one of {', '.join(CHOICES)}; got {str(value)[:40]!r}.", field)
    return value


def set_preference(user, pipeline=None, email=None, browser=None) -> NotificationPreference:
    """Store ``user``'s choice for ``pipeline`` (an id or name of one they may see; empty: their
    default). A channel left out keeps what applied before (the default row's, for a new override)."""
    chosen = _pipeline_of(user, pipeline)
    row = NotificationPreference.objects.filter(user=user, pipeline=chosen).first()
    if row is None:
        before = effective(user.pk, chosen.pk if chosen else None)
        row = NotificationPreference(user=user, pipeline=chosen, email=before.email, browser=before.browser)
    row.email = _checked(email, "email", row.email)
    row.browser = _checked(browser, "browser", row.browser)
    if email is None and browser is None and row.pk is None and chosen is None:
        raise PreferenceRejected("Give email or browser (off, all or failures).", "email")
    row.save()
    return row


def delete_preference(user, pipeline_id: int | None) -> bool:
    """Forget a pipeline's override (or the default row); False when there was none."""
    deleted, _ = NotificationPreference.objects.filter(user=user, pipeline_id=pipeline_id).delete()
    return bool(deleted)


def preferences_of(user) -> list[NotificationPreference]:
    rows = NotificationPreference.objects.filter(user=user).select_related("pipeline")
    return sorted(rows, key=lambda row: (row.pipeline is not None, row.pipeline.name if row.pipeline else ""))
