"""Fair use of the workers: each user's limits on runs at once, and the order workers take runs in.

A run's message says "a run of this queue is waiting", not which one: the worker that receives it
asks :func:`next_candidates` for the fairest run and ``lifecycle.claim_next`` takes it. Users
take turns: the one with the fewest runs running goes first, among equals the one served least
recently, and each user's own runs go oldest first. So a user who queued 300 runs delays another
user's single run by at most one run per worker. A user at their running limit is passed over (the
run stays queued), never failed.

Everything here only reads; ``lifecycle`` makes the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet

from mlopen.pipelines.models import Runtime
from mlopen.runs.models import Run, RunLimits

# When a user past their queued limit may try again: a run of theirs has to start first, and
# nothing says when that will be; a minute is a fair guess that does not invite hammering.
QUEUE_FULL_RETRY_SECONDS = 60


@dataclass(frozen=True)
class Limits:
    """A user's limits; 0 means no limit."""

    max_running: int
    max_queued: int


@dataclass(frozen=True)
class Usage:
    running: int
    queued: int
    limits: Limits


def limits_of(user_ids) -> dict[int, Limits]:
    """Each user's limits: their own (RunLimits) where an admin set one, else the settings."""
    default = Limits(settings.MLOPEN_USER_MAX_RUNNING, settings.MLOPEN_USER_MAX_QUEUED)
    limits = dict.fromkeys(user_ids, default)
    for user_id, running, queued in RunLimits.objects.filter(user_id__in=limits).values_list(
        "user_id", "max_running", "max_queued"
    ):
        limits[user_id] = Limits(
            default.max_running if running is None else running, default.max_queued if queued is None else queued
        )
    return limits


def usage_of(user) -> Usage:
    """How many runs ``user`` has running and queued now, and their limits (the home page, /api/v1/me/)."""
    counts = dict(
        Run.objects.filter(owner=user, status__in=(Run.Status.RUNNING, Run.Status.QUEUED))
        .order_by()
        .values("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return Usage(counts.get(Run.Status.RUNNING, 0), counts.get(Run.Status.QUEUED, 0), limits_of([user.pk])[user.pk])


def over_queued_limit(user_id: int) -> tuple[int, int] | None:
    """(queued now, limit) when ``user_id`` may queue no more runs, else None."""
    limit = limits_of([user_id])[user_id].max_queued
    if not limit:
        return None
    queued = Run.objects.filter(owner_id=user_id, status=Run.Status.QUEUED).count()
    return (queued, limit) if queued >= limit else None


def _running_counts(user_ids) -> dict[int, int]:
    rows = (
        Run.objects.filter(owner_id__in=user_ids, status=Run.Status.RUNNING)
        .order_by()
        .values("owner_id")
        .annotate(n=Count("pk"))
        .values_list("owner_id", "n")
    )
    return dict(rows)


def owners_at_running_limit(user_ids) -> set[int]:
    """Those of ``user_ids`` who may start no run now (at their running limit)."""
    user_ids = set(user_ids)
    if not user_ids:
        return set()
    limits = limits_of(user_ids)
    running = _running_counts(user_ids)
    return {uid for uid in user_ids if limits[uid].max_running and running.get(uid, 0) >= limits[uid].max_running}


def waiting_on_queue(queue: str) -> QuerySet[Run]:
    """Queued runs a worker of ``queue`` could take now: not waiting for their runtime's build (the
    build sends them again when it ends). A run of a failed build is taken, and fails saying why."""
    in_queue = Q(queue=queue)
    if queue == settings.MLOPEN_DEFAULT_QUEUE:  # a run without a queue goes to the default one
        in_queue |= Q(queue="")
    return Run.objects.filter(in_queue, status=Run.Status.QUEUED).exclude(
        version__runtime__build_status=Runtime.Status.BUILDING
    )


def owners_in_turn(queue: str) -> tuple[list[int], list[int]]:
    """The users with runs waiting on ``queue``, in the order they are served: (those who may start
    a run now, those at their running limit). Fewest running first, then least recently served."""
    owners = set(waiting_on_queue(queue).order_by().values_list("owner_id", flat=True).distinct())
    if not owners:
        return [], []
    limits = limits_of(owners)
    running = _running_counts(owners)
    served = dict(
        Run.objects.filter(owner_id__in=owners, started_at__isnull=False)
        .order_by()
        .values("owner_id")
        .annotate(last=Max("started_at"))
        .values_list("owner_id", "last")
    )
    never = datetime.min.replace(tzinfo=None)

    def turn(uid: int) -> tuple:
        last = served.get(uid)
        return (running.get(uid, 0), last.replace(tzinfo=None) if last else never, uid)

    ordered = sorted(owners, key=turn)
    free = [uid for uid in ordered if not limits[uid].max_running or running.get(uid, 0) < limits[uid].max_running]
    blocked = [uid for uid in ordered if uid not in free]
    return free, blocked


def queue_position(run: Run) -> int | None:
    """Where a queued run stands on its queue, taking turns as workers do: 1 is next.

    Its owner's older runs go first, and every other user with runs waiting gets a turn for each of
    them: one more when their turn comes before this owner's. An estimate: runs still to come and
    running limits change it. None once it is not queued.
    """
    if run.status != Run.Status.QUEUED:
        return None
    queue = run.queue or settings.MLOPEN_DEFAULT_QUEUE
    waiting = waiting_on_queue(queue)
    mine = (
        waiting.filter(owner_id=run.owner_id)
        .filter(Q(created_at__lt=run.created_at) | Q(created_at=run.created_at, pk__lt=run.pk))
        .count()
    )
    free, blocked = owners_in_turn(queue)
    turns = free + blocked
    before = set(turns[: turns.index(run.owner_id)]) if run.owner_id in turns else set()
    others = waiting.exclude(owner_id=run.owner_id).order_by().values("owner_id").annotate(n=Count("pk"))
    return (
        mine
        + 1
        + sum(min(n, mine + 1 if owner in before else mine) for owner, n in others.values_list("owner_id", "n"))
    )
