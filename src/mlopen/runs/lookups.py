"""One run by its id, as a user may see it, for the requests clients repeat while they watch a run.

`GET /api/v1/runs/<id>/` (with or without ``?wait=``) and `GET .../logs/?offset=` are asked again
and again by clients that poll, and an open run page asks for its status panel every few seconds
while the run goes (:func:`visible_run_for_page`). Building their lookup with the ORM cost ~1.5 ms a request for a
user who is not an admin (the visibility filter's three ways to see a run, compiled anew each
time), against ~0.1 ms for the database to answer it. Here it is compiled once per process
(mlopen.core.prepared), from ``Run.objects.visible_to`` itself, so the rule lives in one place.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model

from mlopen.core import prepared
from mlopen.runs.models import Run

# Stand-ins for the values each request binds: negative, so no real id can be mistaken for one.
_USER = -2_000_000_321
_RUN = -2_000_000_123


def visible_run(user, run_id: int) -> Run | None:
    """Run ``run_id`` with its pipeline, version, owner and stored result, if ``user`` may see it; else None.

    What ``Run.objects.visible_to(user).select_related(...).filter(pk=run_id)`` finds, without its
    tags prefetched (the serializer reads them itself when they are not)."""
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return any_run(run_id)
    return _VISIBLE.first(run_id=run_id, user_id=user.pk)


def any_run(run_id: int) -> Run | None:
    """Run ``run_id`` with its pipeline, version, owner and stored result, whoever asks (an admin sees every run;
    a request that waited for a run it was allowed to see reads it back so)."""
    return _ANY.first(run_id=run_id)


def visible_run_alone(user, run_id: int) -> Run | None:
    """:func:`visible_run` without its pipeline, version, owner or result: what a log tail needs
    (the run's id and status), asked every second or two while a run goes."""
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return _ANY_ALONE.first(run_id=run_id)
    return _VISIBLE_ALONE.first(run_id=run_id, user_id=user.pk)


def visible_run_for_page(user, run_id: int) -> Run | None:
    """:func:`visible_run` with what the run's web page shows besides: its input and model."""
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return _ANY_FOR_PAGE.first(run_id=run_id)
    return _VISIBLE_FOR_PAGE.first(run_id=run_id, user_id=user.pk)


# With its result when that is kept in the database (runs.results.source_of): the run's detail
# shows the result's first page, and this spares it a second query.
_RELATED = ("pipeline", "version", "owner", "stored_result")
_PAGE_RELATED = (*_RELATED, "input", "trained_model")


def _one_run(user_id: int, admin: bool, run_id: int, related: tuple[str, ...] = _RELATED):
    user = get_user_model()(pk=user_id, is_superuser=admin)  # never saved: only its id is compiled
    runs = Run.objects.visible_to(user)
    if related:  # select_related() with no names would follow every foreign key
        runs = runs.select_related(*related)
    return runs.filter(pk=run_id).order_by()[:1]


def _compiled(admin: bool, related: tuple[str, ...]) -> prepared.Compiled:
    if admin:
        return prepared.Compiled(lambda run_id: _one_run(_USER, True, run_id, related), run_id=_RUN)
    return prepared.Compiled(
        lambda run_id, user_id: _one_run(user_id, False, run_id, related), run_id=_RUN, user_id=_USER
    )


_ANY = _compiled(True, _RELATED)
_VISIBLE = _compiled(False, _RELATED)
_ANY_ALONE = _compiled(True, ())
_VISIBLE_ALONE = _compiled(False, ())
_ANY_FOR_PAGE = _compiled(True, _PAGE_RELATED)
_VISIBLE_FOR_PAGE = _compiled(False, _PAGE_RELATED)
