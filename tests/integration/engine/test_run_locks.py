"""Locks on a run's path (PostgreSQL; SQLite has no row locks).

A queued run's row can be locked for a moment by something that is not a claim: a label edit,
the sweep's stamp. The claim must wait that lock out rather than skip the run, or the message it
received is spent and the run waits for the sweep's resend, minutes later. And a submit must not
wait for workers' claims, which lock the user's row: submits serialize on a lock of their own.
"""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen.runs import fairness, lifecycle
from mlopen.runs.models import Run

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's"),
]
QUEUE = settings.MLOPEN_DEFAULT_QUEUE


@pytest.fixture
def queued_run(db):
    owner = get_user_model().objects.create_user("alice", password="x")
    pipeline = Pipeline.objects.create(name="iris", description="iris pipeline")
    version = PipelineVersion.objects.create(
        pipeline=pipeline, number=1, control_filename="iris.py", folder=f"pipelines/{pipeline.pk}/v1"
    )
    return Run.objects.create(pipeline=pipeline, version=version, kind="run", owner=owner, queue=QUEUE)


def someone_waits_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


def hold_row_lock(run_id: int, locked: threading.Event, done: threading.Event, **changes) -> None:
    """Lock the run's row (as a label edit or another worker's claim would) until the claim waits on
    it (or 10 s), then write ``changes`` to it and let go."""
    try:
        with transaction.atomic():
            list(Run.objects.select_for_update().filter(pk=run_id).values_list("pk"))
            locked.set()
            for _ in range(200):
                if someone_waits_on_a_lock():
                    break
                done.wait(0.05)
            Run.objects.filter(pk=run_id).update(**changes)
    finally:
        connection.close()


def claim_while_locked(run_id: int, **changes):
    """What a worker's claim takes while another connection holds the run's row and then writes
    ``changes`` to it."""
    locked, done = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_row_lock, args=(run_id, locked, done), kwargs=changes)
    holder.start()
    assert locked.wait(10)
    try:
        return lifecycle.claim_next(QUEUE, "w1", "none")
    finally:
        done.set()
        holder.join(10)


def test_a_claim_waits_for_a_run_locked_by_an_edit_instead_of_skipping_it(queued_run):
    taken = claim_while_locked(queued_run.pk, name="renamed while queued")

    assert taken is not None and taken.pk == queued_run.pk
    queued_run.refresh_from_db()
    assert (queued_run.status, queued_run.name) == (Run.Status.RUNNING, "renamed while queued")


def test_a_run_taken_by_another_claim_while_waiting_is_not_taken_twice(queued_run):
    taken = claim_while_locked(queued_run.pk, status=Run.Status.RUNNING, worker="w2")

    assert taken is None
    queued_run.refresh_from_db()
    assert queued_run.worker == "w2"


def hold_in_thread(hold, released_by_main: threading.Event):
    """Run ``hold()`` in a transaction of its own thread, which keeps its locks until the returned
    ``done`` is set (``released_by_main`` then says so) or 15 s pass."""
    locked, done = threading.Event(), threading.Event()

    def body() -> None:
        try:
            with transaction.atomic():
                hold()
                locked.set()
                if done.wait(15):
                    released_by_main.set()
        finally:
            connection.close()

    thread = threading.Thread(target=body)
    thread.start()
    assert locked.wait(10)
    return thread, done


def test_a_submit_inserts_its_run_while_a_claim_holds_the_users_row(queued_run):
    owner = queued_run.owner
    released_by_main = threading.Event()
    claim = lambda: fairness.lock_and_check_running_limit(owner.pk)  # noqa: E731 - what a claim locks
    thread, done = hold_in_thread(claim, released_by_main)
    try:
        with transaction.atomic():  # what submit_run writes, under its own lock
            fairness.lock_queued_limit(owner.pk)
            Run.objects.create(
                pipeline=queued_run.pipeline, version=queued_run.version, kind="run", owner=owner, queue=QUEUE
            )
    finally:
        done.set()
        thread.join(20)
    assert released_by_main.is_set()  # the submit finished while the claim's lock was held


def test_two_submits_of_one_user_take_turns(queued_run):
    owner = queued_run.owner
    released_by_main = threading.Event()
    thread, done = hold_in_thread(lambda: fairness.lock_queued_limit(owner.pk), released_by_main)
    waited = threading.Event()

    def second_submit() -> None:
        try:
            with transaction.atomic():
                fairness.lock_queued_limit(owner.pk)
                waited.set()
        finally:
            connection.close()

    second = threading.Thread(target=second_submit)
    second.start()
    try:
        for _ in range(200):
            if someone_waits_on_a_lock():
                break
            done.wait(0.05)
        assert not waited.is_set()  # still waiting for the first submit's lock
    finally:
        done.set()
        thread.join(20)
        second.join(20)
    assert waited.is_set()
