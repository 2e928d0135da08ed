"""Waiting for a run to finish inside a request (long polling), so clients need not poll.

`POST /api/v1/runs/` with ``"wait": seconds`` and `GET /api/v1/runs/<id>/?wait=seconds` answer as
soon as the run has finished (or when the wait is over, with the run as it is then).

The waiting thread sleeps until the worker that finishes the run says so, then reads the run's
row: no polling, so waiting takes no CPU from the workers, and the answer leaves as soon as the
run has finished. On PostgreSQL it LISTENs and the worker NOTIFYs the run's id. On SQLite (one
host) it sleeps on a doorbell (mlopen.core.doorbell), a Unix socket beside the database file,
which the worker rings. Either
way the row is read every second too, in case a notice was lost. Where neither works (a folder
that cannot hold a socket), the thread checks the row: every 2 ms for the first quarter second
(a warm run takes tens of milliseconds), then every 25 ms, and after 10 s four times a second.

A waiting request holds one of the web server's threads, so each web process lets at most
MLOPEN_MAX_WAITING_REQUESTS requests wait at once; past that a request answers at once with the
run's current state, and the client waits again or polls.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection

from mlopen.core import doorbell
from mlopen.runs import lookups
from mlopen.runs.models import Run

FAST_CHECK_SECONDS = 0.002
FAST_PHASE_SECONDS = 0.25
MEDIUM_CHECK_SECONDS = 0.025
MEDIUM_PHASE_SECONDS = 10.0
SLOWEST_CHECK_SECONDS = 0.25
# PostgreSQL: workers NOTIFY this channel with a run's id when it finishes; a waiting request looks
# at the row this often anyway, in case a notice was lost (pg_notify failed, say).
FINISHED_CHANNEL = "mlopen_run_finished"
MISSED_NOTICE_CHECK_SECONDS = 1.0

log = logging.getLogger(__name__)
_slots_lock = threading.Lock()
_slots: threading.BoundedSemaphore | None = None


def _waiting_slots() -> threading.BoundedSemaphore:
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(max(1, settings.MLOPEN_MAX_WAITING_REQUESTS))
        return _slots


def has_finished(run_id: int) -> bool:
    # Asked every 2 ms while a request waits on SQLite: the statement is built once per process
    # (the ORM's query compilation cost several times the lookup itself), its values bound each time.
    with connection.cursor() as cursor:
        cursor.execute(_finished_sql(), [run_id, *Run.FINISHED])
        return cursor.fetchone() is not None


@functools.cache
def _finished_sql() -> str:
    table, pk, status = Run._meta.db_table, str(Run._meta.pk.column), str(Run._meta.get_field("status").column)
    marks = ", ".join(["%s"] * len(Run.FINISHED))
    quote = connection.ops.quote_name
    return f"SELECT 1 FROM {quote(table)} WHERE {quote(pk)} = %s AND {quote(status)} IN ({marks}) LIMIT 1"


def read_back(run_id: int) -> Run | None:
    """The run as it is now, with its pipeline, version and owner: what a request that waited for it
    answers with."""
    return lookups.any_run(run_id)  # the request checked that its user may see it


def wait_until_finished(run_id: int, seconds: float) -> bool:
    """Block until run ``run_id`` has finished or ``seconds`` have passed; return whether it finished.

    Returns at once (False) when this process already has as many waiting requests as it allows.
    """
    if seconds <= 0:
        return has_finished(run_id)
    slots = _waiting_slots()
    if not slots.acquire(blocking=False):
        return has_finished(run_id)
    try:
        return _watch(run_id, min(seconds, settings.MLOPEN_MAX_WAIT_SECONDS))
    finally:
        slots.release()


def _watch(run_id: int, seconds: float) -> bool:
    if connection.vendor == "postgresql":
        try:
            return _watch_notified(run_id, seconds)
        except DatabaseError:
            log.warning("waiting for run %s by LISTEN failed; checking its row instead", run_id, exc_info=True)
    folder = _doorbells_folder()
    if folder is not None:
        try:
            bell = doorbell.Doorbell.open(folder, str(run_id))
        except OSError:
            log.warning("waiting for run %s by a doorbell in %s failed; checking its row instead", run_id, folder)
        else:
            with bell:  # the first look comes after the bell exists, so a finish before it is not missed
                return _check_until(
                    run_id, seconds, lambda elapsed, remaining: bell.wait(min(MISSED_NOTICE_CHECK_SECONDS, remaining))
                )
    return _check_until(run_id, seconds, _polling_pause())


def _doorbells_folder() -> Path | None:
    """SQLite: the folder beside the database file, which every process using it can reach.

    Resolved, so that a web server and a worker naming the same file differently (a relative path,
    a link, DATABASE_URL against MLOPEN_HOME) still meet in one folder."""
    name = str(connection.settings_dict.get("NAME") or "")
    if connection.vendor != "sqlite" or not name or name.startswith("file:") or name == ":memory:":
        return None
    return _doorbells_folder_of(name)


@functools.lru_cache(maxsize=8)
def _doorbells_folder_of(database_name: str) -> Path:
    # Resolving walks every folder of the path: once per name, not on every run's finish and wait.
    database = Path(database_name).resolve()
    return database.with_name(database.name + "-waiting")


def _check_until(run_id: int, seconds: float, pause) -> bool:
    """Look at the run's row until it has finished (True) or ``seconds`` have passed (False), calling
    ``pause(elapsed, remaining)`` between looks. It only reads: a lost worker's run is failed by
    the live workers' sweep (runs.lifecycle.fail_lost), which announces it like any other end."""
    started = time.monotonic()
    deadline = started + seconds
    while True:
        if has_finished(run_id):
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        pause(now - started, deadline - now)


def _polling_pause():
    """Sleep 2 ms at first, then up to 25 ms, and after 10 s up to 250 ms."""
    delay = FAST_CHECK_SECONDS

    def pause(elapsed: float, remaining: float) -> None:
        nonlocal delay
        time.sleep(min(delay, remaining))
        if elapsed >= FAST_PHASE_SECONDS:
            delay = min(delay * 2, MEDIUM_CHECK_SECONDS if elapsed < MEDIUM_PHASE_SECONDS else SLOWEST_CHECK_SECONDS)

    return pause


def _watch_notified(run_id: int, seconds: float) -> bool:
    """On PostgreSQL: sleep until a worker NOTIFYs that this run finished (see announce_finished).

    No polling, so a waiting request takes no CPU from the worker; the row is still looked at every
    MISSED_NOTICE_CHECK_SECONDS in case a run finished without a notice. The first look comes after
    LISTEN, so a finish announced before it is not missed.
    """
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute(f"LISTEN {FINISHED_CHANNEL}")
    try:
        wanted = str(run_id)
        return _check_until(
            run_id, seconds, lambda elapsed, remaining: _notice_for(wanted, min(MISSED_NOTICE_CHECK_SECONDS, remaining))
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"UNLISTEN {FINISHED_CHANNEL}")


def _notice_for(wanted: str, timeout: float) -> bool:
    """Sleep until the notice that run ``wanted`` finished (True), or ``timeout`` seconds (False)."""
    return any(notice.payload == wanted for notice in connection.connection.notifies(timeout=timeout))


def announce_finished(run_id: int) -> None:
    """Tell requests waiting for run ``run_id`` that it has finished."""
    if connection.vendor != "postgresql":
        folder = _doorbells_folder()
        if folder is not None:
            doorbell.ring(folder, str(run_id))
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [FINISHED_CHANNEL, str(run_id)])
    except DatabaseError:  # a waiting request still sees the row within a second
        log.warning("could not announce that run %s finished", run_id, exc_info=True)
