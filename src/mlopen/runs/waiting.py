"""Waiting for a run to finish inside a request (long polling), so clients need not poll.

`POST /api/v1/runs/` with ``"wait": seconds`` and `GET /api/v1/runs/<id>/?wait=seconds` answer as
soon as the run has finished (or when the wait is over, with the run as it is then). The waiting
thread watches the run's row: that works the same on SQLite and PostgreSQL and across any number
of worker hosts, at the cost of one indexed primary-key lookup per check. It checks every 2 ms
for the first quarter second (a warm run takes tens of milliseconds, and every millisecond of
notice is latency the client sees), then backs off to four checks a second.

A waiting request holds one of the web server's threads, so each web process lets at most
MLOPEN_MAX_WAITING_REQUESTS requests wait at once; past that a request answers at once with the
run's current state, and the client waits again or polls.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

from mlopen.runs.models import Run

FAST_CHECK_SECONDS = 0.002
FAST_PHASE_SECONDS = 0.25
SLOWEST_CHECK_SECONDS = 0.25
# A lost worker's run is failed by whoever looks (mlopen.runs.workers.fail_lost_runs); a long wait
# looks too, this often, so it ends with the run's failure rather than at its deadline.
REAP_EVERY_SECONDS = 5.0

_slots_lock = threading.Lock()
_slots: threading.BoundedSemaphore | None = None


def _waiting_slots() -> threading.BoundedSemaphore:
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(max(1, settings.MLOPEN_MAX_WAITING_REQUESTS))
        return _slots


def has_finished(run_id: int) -> bool:
    return Run.objects.filter(pk=run_id, status__in=Run.FINISHED).exists()


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
    from mlopen.runs.workers import fail_lost_runs

    started = time.monotonic()
    deadline = started + seconds
    next_reap = started + REAP_EVERY_SECONDS
    delay = FAST_CHECK_SECONDS
    while True:
        if has_finished(run_id):
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        if now >= next_reap:
            fail_lost_runs()
            next_reap = now + REAP_EVERY_SECONDS
        time.sleep(min(delay, deadline - now))
        if now - started >= FAST_PHASE_SECONDS:
            delay = min(delay * 2, SLOWEST_CHECK_SECONDS)
