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

import functools
import re
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Q, QuerySet

from mlopen.core import prepared
from mlopen.pipelines.models import PipelineVersion, Runtime
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


# pg_advisory_xact_lock's first key for "this user's submits" (the second is the user's id).
SUBMITS_LOCK = 0x6D6C6F70


def lock_queued_limit(user_id: int) -> None:
    """Inside a submit's transaction: let one submit of ``user_id`` at a time count their queued runs
    and add one, so two at once cannot both take the last place.

    On PostgreSQL a transaction-level advisory lock, not the user's row: workers' claims lock that
    row (the running limit, :func:`lock_and_check_running_limit`), and submits queued behind claims
    made a second worker slower than one. SQLite's IMMEDIATE transactions run one at a time already.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SUBMITS_LOCK, user_id % 2**31])
    elif connection.features.has_select_for_update:
        list(get_user_model().objects.select_for_update(no_key=True).filter(pk=user_id).values_list("pk"))


def over_queued_limit(user_id: int) -> tuple[int, int] | None:
    """(queued now, limit) when ``user_id`` may queue no more runs, else None."""
    queued, own_limit = _count_and_own_limit(user_id, Run.Status.QUEUED, "max_queued")
    limit = settings.MLOPEN_USER_MAX_QUEUED if own_limit is None else own_limit
    if not limit:
        return None
    return (queued, limit) if queued >= limit else None


def _count_and_own_limit(owner_id: int, status: str, limit_field: str) -> tuple[int, int | None]:
    """How many of the owner's runs have ``status``, and the owner's own ``limit_field`` of
    RunLimits (None: the settings' default). One statement, written once per process: every submit
    and every claim on PostgreSQL asks."""
    with connection.cursor() as cursor:
        cursor.execute(_count_and_own_limit_sql(connection.vendor, limit_field), {"owner": owner_id, "status": status})
        return cursor.fetchone()


@functools.cache
def _count_and_own_limit_sql(vendor: str, limit_field: str) -> str:
    run, limits = prepared.quoted(Run._meta.db_table), prepared.quoted(RunLimits._meta.db_table)
    owner, status = prepared.columns(Run, "owner", "status")
    user, own_limit = prepared.columns(RunLimits, "user", limit_field)
    return (
        f"SELECT (SELECT COUNT(*) FROM {run} WHERE {owner} = %(owner)s AND {status} = %(status)s), "
        f"(SELECT {own_limit} FROM {limits} WHERE {user} = %(owner)s)"
    )


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
    return _waiting(queue, queue == settings.MLOPEN_DEFAULT_QUEUE)


def _waiting(queue: str, default_queue: bool) -> QuerySet[Run]:
    in_queue = Q(queue=queue)
    if default_queue:  # a run without a queue goes to the default one
        in_queue |= Q(queue="")
    return Run.objects.filter(in_queue, status=Run.Status.QUEUED).exclude(
        version__runtime__build_status=Runtime.Status.BUILDING
    )


def owners_in_turn(queue: str) -> tuple[list[int], list[int]]:
    """The users with runs waiting on ``queue``, in the order they are served: (those who may start
    a run now, those at their running limit). Fewest running first, then least recently served
    (never served first), then the lowest id.

    One statement, compiled once per process (mlopen.core.prepared): it runs on every claim.
    """
    default = settings.MLOPEN_USER_MAX_RUNNING
    free: list[int] = []
    blocked: list[int] = []
    for owner_id, running, own_limit in _turns_statement(queue).rows(queue=queue):
        limit = default if own_limit is None else own_limit
        (blocked if limit and running >= limit else free).append(owner_id)
    return free, blocked


WAITING_OWNER_CREATED_INDEX = "run_waiting_owner_created"  # runs.models.Run.Meta.indexes

_QUEUE_STAND_IN = "\x00mlopen-queue\x00"
_OWNER_STAND_IN = -2_000_000_123  # within every integer column's range: the ORM drops out-of-range lookups


@dataclass(frozen=True)
class _WaitingSql:
    """Hand-written pieces of SQL over the runs waiting on one queue, for the statements below."""

    users: str  # WITH RECURSIVE w(owner_id): each user with a run waiting (and NULL once, at the end)
    runnable: str  # FROM ... WHERE: the waiting runs of user {owner} a worker could take now

    @property
    def runnable_of_user(self) -> str:
        """:attr:`runnable` of each user ``w`` gives."""
        return self.runnable.format(owner="w.owner_id")


# A queue name made only of these is written into the statements as a literal instead of a
# parameter: PostgreSQL's generic plan of a prepared statement (psycopg prepares each after five
# runs) does not know the queue, and walked the index of every run's owner for the next user with
# runs waiting: 25-70 ms a claim with 20 000 waiting, against 1-5 ms planned for the queue it asks.
_PLAIN_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")


def _queue_in_sql(queue: str) -> str:
    """``queue`` as a literal for SQL when its name is plain (the usual case), else a parameter."""
    return f"'{queue}'" if _PLAIN_QUEUE_NAME.fullmatch(queue) else "%(queue)s"


@functools.lru_cache(maxsize=256)
def _waiting_sql(vendor: str, default_queue: bool, queue_in_sql: str, builds: bool = True) -> _WaitingSql:
    """No ORM query says "each user with a run waiting" without reading every waiting run, hence SQL
    written by hand (table and column names from the models).

    The users come from a loose index scan of the partial index on waiting runs' (queue, owner):
    the smallest owner, then the smallest one above it, and so on, one index seek per user however
    many runs each has waiting (``SELECT DISTINCT`` read all of them: 15-20 ms a claim with 20 000
    waiting, with SQLite's write lock held). Their runs a worker could take now are those
    :func:`waiting_on_queue` gives: not on a runtime still being built. Asked knowing that no
    runtime is being built (``builds`` false), the runs are read from that index alone, without
    their version and runtime rows.
    """
    run = prepared.quoted(Run._meta.db_table)
    version, runtime = prepared.quoted(PipelineVersion._meta.db_table), prepared.quoted(Runtime._meta.db_table)
    owner, status, queue, run_version = prepared.columns(Run, "owner", "status", "queue", "version")
    version_id, version_runtime = prepared.columns(PipelineVersion, "id", "runtime")
    runtime_id, build_status = prepared.columns(Runtime, "id", "build_status")
    # Literal, not a parameter, so that every database sees the partial index's condition.
    waiting = f"r.{status} = '{Run.Status.QUEUED.value}'"
    # A run without a queue goes to the default one.
    names = [queue_in_sql, "''"] if default_queue else [queue_in_sql]
    queues = [f"r.{queue} = {name}" for name in names]
    hint = prepared.index_hint(vendor, WAITING_OWNER_CREATED_INDEX)

    def after(name: str, above: str | None) -> str:
        if above is None:
            return ""
        if vendor == "postgresql":
            # (queue, owner) compared as one value, a range of this index. Asked for owner > above,
            # PostgreSQL used the index of every run's owner instead whenever it guessed a match
            # was near, and with none there read all of it: 2 ms for each user. SQLite seeks the
            # plain form, and scans for the row value.
            return f" AND (r.{queue}, r.{owner}) > ({name}, {above})"
        return f" AND r.{owner} > {above}"

    def next_owner(above: str | None) -> str:
        # One MIN per queue, each a single seek, and the smallest of them (MIN ignores a NULL).
        each = " UNION ALL ".join(
            f"SELECT MIN(r.{owner}) AS o FROM {run} r WHERE {waiting} AND r.{queue} = {name}{after(name, above)}"
            for name in names
        )
        return f"(SELECT MIN(n.o) FROM ({each}) n)"

    return _WaitingSql(
        users=(
            f"WITH RECURSIVE w(owner_id) AS (SELECT {next_owner(None)} "
            f"UNION ALL SELECT {next_owner('w.owner_id')} FROM w WHERE w.owner_id IS NOT NULL)"
        ),
        runnable=(
            f"FROM {run} r INNER JOIN {version} v ON r.{run_version} = v.{version_id} "
            f"LEFT OUTER JOIN {runtime} t ON v.{version_runtime} = t.{runtime_id} "
            f"WHERE r.{owner} = {{owner}} AND {waiting} AND ({' OR '.join(queues)}) "
            f"AND NOT (t.{build_status} = '{Runtime.Status.BUILDING.value}' AND t.{build_status} IS NOT NULL)"
            if builds
            # SQLite without statistics took the index of each user's runs by status instead, and
            # read every run's row for its queue: 15 ms against 2 for 10 000 of one user's runs.
            else f"FROM {run} r{hint} WHERE r.{owner} = {{owner}} AND {waiting} AND r.{queue} IN ({', '.join(names)})"
        ),
    )


@functools.lru_cache(maxsize=256)
def _turns_sql(vendor: str, default_queue: bool, queue_in_sql: str) -> prepared.Prepared:
    """The statement behind :func:`owners_in_turn`. A user whose every waiting run is on a runtime
    still being built is left out."""
    pieces = _waiting_sql(vendor, default_queue, queue_in_sql)
    run, limits = prepared.quoted(Run._meta.db_table), prepared.quoted(RunLimits._meta.db_table)
    owner, status, started, created = prepared.columns(Run, "owner", "status", "started_at", "created_at")
    user, max_running = prepared.columns(RunLimits, "user", "max_running")
    # A scalar subquery rather than EXISTS: PostgreSQL turned EXISTS into a join with every waiting
    # run; LIMIT 1 keeps it one look per user, which stops at the user's first runnable run. The
    # ORDER BY (the oldest first, as claims take them) is for PostgreSQL too: without it, it walked
    # the index of all the user's runs in the order their rows lie, and once a sweep had rewritten
    # the waiting ones (new row versions go to the table's end) passed every finished run first:
    # 90 000 rows for a user with 100 000 runs, this statement 25 ms instead of 7.
    runnable = f"(SELECT 1 {pieces.runnable_of_user} ORDER BY r.{created} LIMIT 1) IS NOT NULL"
    running = (
        f"(SELECT COUNT(*) FROM {run} r WHERE r.{owner} = w.owner_id AND r.{status} = '{Run.Status.RUNNING.value}')"
    )
    # The index on (owner, started_at) answers this with one seek, however many runs a user has.
    last = (
        f"(SELECT r.{started} FROM {run} r WHERE r.{owner} = w.owner_id AND r.{started} IS NOT NULL "
        f"ORDER BY r.{started} DESC LIMIT 1)"
    )
    return _named_to_positional(
        f"{pieces.users} SELECT w.owner_id, {running} AS running, l.{max_running} FROM w "
        f"LEFT JOIN {limits} l ON l.{user} = w.owner_id "
        f"WHERE w.owner_id IS NOT NULL AND {runnable} "
        f"ORDER BY running, {last} IS NOT NULL, {last}, w.owner_id"
    )


@functools.lru_cache(maxsize=256)
def _capped_counts_sql(vendor: str, default_queue: bool, queue_in_sql: str, builds: bool) -> prepared.Prepared:
    """Each user with a run waiting, and how many of their runs a worker could take, counted up to
    ``cap`` at most: reading a user's first few runs, never all of them."""
    pieces = _waiting_sql(vendor, default_queue, queue_in_sql, builds)
    return _named_to_positional(
        f"{pieces.users} SELECT w.owner_id, (SELECT COUNT(*) FROM (SELECT 1 {pieces.runnable_of_user} "
        f"LIMIT %(cap)s) c) FROM w WHERE w.owner_id IS NOT NULL"
    )


@functools.lru_cache(maxsize=256)
def _earlier_of_owner_sql(vendor: str, default_queue: bool, queue_in_sql: str, builds: bool) -> prepared.Prepared:
    """How many of a user's runs a worker could take wait before a run (older, or as old with a
    smaller id). With no runtime being built, one range of the index of waiting runs' (owner, queue,
    created_at, id) per queue name, each counted from the index alone."""
    created, pk = prepared.columns(Run, "created_at", "id")
    earlier = f"(r.{created}, r.{pk}) < (%(created)s, %(pk)s)"
    if builds:
        runnable = _waiting_sql(vendor, default_queue, queue_in_sql, builds).runnable.format(owner="%(owner)s")
        return _named_to_positional(f"SELECT COUNT(*) {runnable} AND {earlier}")
    run = prepared.quoted(Run._meta.db_table)
    owner, status, queue = prepared.columns(Run, "owner", "status", "queue")
    hint = prepared.index_hint(vendor, WAITING_OWNER_CREATED_INDEX)
    names = [queue_in_sql, "''"] if default_queue else [queue_in_sql]  # no queue: the default one
    counts = [
        f"(SELECT COUNT(*) FROM {run} r{hint} WHERE r.{queue} = {name} AND r.{owner} = %(owner)s "
        f"AND r.{status} = '{Run.Status.QUEUED.value}' AND {earlier})"
        for name in names
    ]
    return _named_to_positional(f"SELECT {' + '.join(counts)}")


def _named_to_positional(sql: str) -> prepared.Prepared:
    """``sql`` with each ``%(name)s`` made a positional parameter, as Prepared binds them."""
    parts = re.split(r"%\((\w+)\)s", sql)
    names = parts[1::2]
    return prepared.Prepared("%s".join(parts[::2]), (None,) * len(names), dict(enumerate(names)))


def _statement_key(queue: str) -> tuple[str, bool, str]:
    """What the hand-written statements over ``queue``'s waiting runs are built and kept by."""
    return connection.vendor, queue == settings.MLOPEN_DEFAULT_QUEUE, _queue_in_sql(queue)


def _turns_statement(queue: str) -> prepared.Prepared:
    return _turns_sql(*_statement_key(queue))


@functools.cache
def _oldest_sql(vendor: str, default_queue: bool, skip_locked: bool) -> prepared.Prepared:
    return prepared.prepare(
        lambda queue, owner: (
            _waiting(queue, default_queue)
            .filter(owner_id=owner)
            .order_by("created_at", "pk")
            .select_for_update(skip_locked=skip_locked, of=("self",), no_key=True)
            .values_list("pk", flat=True)[:1]
        ),
        queue=_QUEUE_STAND_IN,
        owner=_OWNER_STAND_IN,
    )


@functools.cache
def _lock_user_sql(vendor: str) -> prepared.Prepared:
    return prepared.prepare(
        # NO KEY UPDATE: it excludes other claims, but not a run being inserted for this user,
        # whose foreign key check takes a KEY SHARE lock on the same row.
        lambda owner: get_user_model().objects.select_for_update(no_key=True).filter(pk=owner).values_list("pk"),
        owner=_OWNER_STAND_IN,
    )


def lock_and_check_running_limit(owner_id: int) -> bool:
    """Inside a claim's transaction on a database with row locks: lock the user's row (two workers
    then cannot both start their last allowed run) and say whether they are at their running limit."""
    _lock_user_sql(connection.vendor).rows(owner=owner_id)
    running, own_limit = _count_and_own_limit(owner_id, Run.Status.RUNNING, "max_running")
    limit = settings.MLOPEN_USER_MAX_RUNNING if own_limit is None else own_limit
    return bool(limit) and running >= limit


def oldest_waiting(queue: str, owner_id: int, *, skip_locked: bool) -> int | None:
    """The id of ``owner_id``'s oldest run waiting on ``queue``, locked for the caller's transaction:
    one nobody else holds locked (``skip_locked``), or the oldest, once its lock is free."""
    statement = _oldest_sql(connection.vendor, queue == settings.MLOPEN_DEFAULT_QUEUE, skip_locked)
    return statement.first_value(queue=queue, owner=owner_id)


def queue_position(run: Run) -> int | None:
    """Where a queued run stands on its queue, taking turns as workers do: 1 is next.

    Its owner's older runs go first, and every other user with runs waiting gets a turn for each of
    them: one more when their turn comes before this owner's. An estimate: runs still to come and
    running limits change it. None once it is not queued.

    The run page asks every few seconds while a run waits, so no statement here reads more than
    this owner's waiting runs and, of each other user's, as many as can count.
    """
    if run.status != Run.Status.QUEUED:
        return None
    queue = run.queue or settings.MLOPEN_DEFAULT_QUEUE
    # With no runtime being built (nearly always) every waiting run can be taken, and the counts
    # below read the index of waiting runs alone: 37.5 ms became 5 with 20 000 waiting (SQLite).
    key = (*_statement_key(queue), Runtime.objects.filter(build_status=Runtime.Status.BUILDING).exists())
    mine = _earlier_of_owner_sql(*key).first_value(
        queue=queue, owner=run.owner_id, created=connection.ops.adapt_datetimefield_value(run.created_at), pk=run.pk
    )
    free, blocked = owners_in_turn(queue)
    turns = free + blocked
    before = set(turns[: turns.index(run.owner_id)]) if run.owner_id in turns else set()
    if not mine:  # this owner's next run: one turn for each user before them, who has at least one
        return 1 + len(before)
    counts = _capped_counts_sql(*key).rows(queue=queue, cap=mine + 1)
    return mine + 1 + sum(min(n, mine + 1 if owner in before else mine) for owner, n in counts if owner != run.owner_id)
