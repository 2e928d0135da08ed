"""A worker's claim and row locks held by others (PostgreSQL; SQLite has no row locks).

A queued run's row can be locked for a moment by something that is not a claim: a label edit,
the sweep's stamp. The claim must wait that lock out rather than skip the run, or the message it
received is spent and the run waits for the sweep's resend, minutes later.
"""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen.runs import lifecycle
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


def hold_row_lock(run_id: int, locked: threading.Event, done: threading.Event) -> None:
    """Lock the run's row as a label edit would, until the claim waits on it (or 10 s)."""
    try:
        with transaction.atomic():
            list(Run.objects.select_for_update().filter(pk=run_id).values_list("pk"))
            locked.set()
            for _ in range(200):
                if someone_waits_on_a_lock():
                    break
                done.wait(0.05)
            Run.objects.filter(pk=run_id).update(name="renamed while queued")
    finally:
        connection.close()


def test_a_claim_waits_for_a_run_locked_by_an_edit_instead_of_skipping_it(queued_run):
    locked, done = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_row_lock, args=(queued_run.pk, locked, done))
    holder.start()
    assert locked.wait(10)
    try:
        taken = lifecycle.claim_next(QUEUE, "w1", "none")
    finally:
        done.set()
        holder.join(10)

    assert taken is not None and taken.pk == queued_run.pk
    queued_run.refresh_from_db()
    assert (queued_run.status, queued_run.name) == (Run.Status.RUNNING, "renamed while queued")


def test_a_run_taken_by_another_claim_while_waiting_is_not_taken_twice(queued_run):
    locked, done = threading.Event(), threading.Event()

    def other_worker_claims() -> None:
        try:
            with transaction.atomic():
                list(Run.objects.select_for_update().filter(pk=queued_run.pk).values_list("pk"))
                locked.set()
                for _ in range(200):
                    if someone_waits_on_a_lock():
                        break
                    done.wait(0.05)
                Run.objects.filter(pk=queued_run.pk).update(status=Run.Status.RUNNING, worker="w2")
        finally:
            connection.close()

    holder = threading.Thread(target=other_worker_claims)
    holder.start()
    assert locked.wait(10)
    try:
        taken = lifecycle.claim_next(QUEUE, "w1", "none")
    finally:
        done.set()
        holder.join(10)

    assert taken is None
    queued_run.refresh_from_db()
    assert queued_run.worker == "w2"
