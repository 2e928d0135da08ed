"""runs.fairness and lifecycle.claim_next: users take turns, each user's oldest run first, a user
at their running limit is passed over (the run stays queued), and a run is taken once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mlopen.pipelines.models import Pipeline, PipelineVersion, Runtime
from mlopen.runs import fairness, lifecycle, sweep
from mlopen.runs.models import Run, RunLimits

pytestmark = pytest.mark.django_db
QUEUE = settings.MLOPEN_DEFAULT_QUEUE


@pytest.fixture
def pipeline(db):
    pipeline = Pipeline.objects.create(name="iris", description="iris pipeline")
    PipelineVersion.objects.create(
        pipeline=pipeline, number=1, control_filename="iris.py", folder=f"pipelines/{pipeline.pk}/v1"
    )
    return pipeline


@pytest.fixture
def people(db):
    make = get_user_model().objects.create_user
    return make("alice", password="x"), make("bob", password="x"), make("carol", password="x")


def queue_runs(pipeline, owner, count: int, queue: str = QUEUE) -> list[Run]:
    return [
        Run.objects.create(pipeline=pipeline, version=pipeline.latest_version, kind="run", owner=owner, queue=queue)
        for _ in range(count)
    ]


def version_being_built(pipeline) -> PipelineVersion:
    """A second version of ``pipeline`` on a runtime whose build has not ended."""
    building = Runtime.objects.create(digest="b" * 64, name="rt", lock="", build_status=Runtime.Status.BUILDING)
    return PipelineVersion.objects.create(
        pipeline=pipeline, number=2, control_filename="iris.py", folder="x", runtime=building
    )


def finish(run: Run) -> None:
    assert lifecycle.finish(run.pk, Run.Status.SUCCEEDED)


def test_claim_next_takes_turns_between_users_oldest_run_first(pipeline, people):
    alice, bob, carol = people
    alices = queue_runs(pipeline, alice, 5)
    bobs = queue_runs(pipeline, bob, 1)
    carols = queue_runs(pipeline, carol, 2)
    order = []
    for _ in range(8):
        run = lifecycle.claim_next(QUEUE, "w1", "none")
        order.append(run.pk)
        finish(run)  # one worker: one run at a time
    assert lifecycle.claim_next(QUEUE, "w1", "none") is None
    # Nobody served yet: alice (lowest id) first, then those not yet served, then in turn.
    assert order == [alices[0].pk, bobs[0].pk, carols[0].pk, alices[1].pk, carols[1].pk] + [r.pk for r in alices[2:]]


def test_a_late_single_run_waits_for_at_most_one_run_of_a_busy_user(pipeline, people):
    alice, bob, _ = people
    alices = queue_runs(pipeline, alice, 30)
    first = lifecycle.claim_next(QUEUE, "w1", "none")
    assert first.pk == alices[0].pk
    (bobs,) = queue_runs(pipeline, bob, 1)  # queued while alice's first run is running
    finish(first)
    assert lifecycle.claim_next(QUEUE, "w1", "none").pk == bobs.pk


class SentMessages(list):
    """Stands in for the run task in the sweep: records the messages instead of sending them."""

    def apply_async(self, kwargs, queue):
        self.append((kwargs["run_id"], queue))


def test_a_user_at_their_running_limit_is_passed_over_not_failed(pipeline, people, monkeypatch):
    sent = SentMessages()
    monkeypatch.setattr(sweep, "execute_run", sent)
    alice, bob, _ = people
    RunLimits.objects.create(user=alice, max_running=2)
    queue_runs(pipeline, alice, 4)
    taken = [lifecycle.claim_next(QUEUE, f"w{i}", "none") for i in range(2)]
    assert {run.owner_id for run in taken} == {alice.pk}
    # A third worker finds only alice's runs, and alice at her limit: nothing, and the run stays queued.
    assert lifecycle.claim_next(QUEUE, "w3", "none") is None
    assert Run.objects.filter(owner=alice, status="queued").count() == 2
    # The spent message is kept as a mark: one run to send again, but not while alice is at her limit.
    assert Run.objects.filter(owner=alice, status="queued", enqueued_at__isnull=True).count() == 1
    assert sweep.requeue_lost_runs() == []
    (bobs,) = queue_runs(pipeline, bob, 1)
    assert lifecycle.claim_next(QUEUE, "w3", "none").pk == bobs.pk
    finish(taken[0])
    assert len(sweep.requeue_lost_runs()) == 1  # alice may start one again: its message goes out
    assert len(sent) == 1
    assert lifecycle.claim_next(QUEUE, "w1", "none").owner_id == alice.pk


def test_after_a_run_ends_only_runs_without_a_message_are_sent(pipeline, people, monkeypatch):
    sent = SentMessages()
    monkeypatch.setattr(sweep, "execute_run", sent)
    alice, _, _ = people
    # A run whose message went out long ago (the broker may have lost it) waits for the heartbeat's
    # sweep: the end of another run does not look for it.
    (old,) = queue_runs(pipeline, alice, 1)
    Run.objects.filter(pk=old.pk).update(enqueued_at=timezone.now() - timedelta(days=1))
    assert sweep.send_unsent_runs() == []
    assert sent == []
    # A run put back without a message is sent, and the sweep then takes the lost one along.
    (unsent,) = queue_runs(pipeline, alice, 1)
    Run.objects.filter(pk=unsent.pk).update(enqueued_at=None)
    assert sweep.send_unsent_runs() == sorted([old.pk, unsent.pk])
    assert sorted(pk for pk, _queue in sent) == sorted([old.pk, unsent.pk])
    assert sweep.send_unsent_runs() == []  # both stamped as sent


@override_settings(MLOPEN_USER_MAX_RUNNING=1)
def test_the_running_limit_comes_from_the_settings_and_zero_is_no_limit(pipeline, people):
    alice, bob, _ = people
    RunLimits.objects.create(user=bob, max_running=0)
    queue_runs(pipeline, alice, 2)
    queue_runs(pipeline, bob, 3)
    owners = [lifecycle.claim_next(QUEUE, "w", "none") for _ in range(5)]
    assert sorted(run.owner_id for run in owners if run) == [alice.pk, bob.pk, bob.pk, bob.pk]


def test_claim_next_keeps_to_its_queue_and_skips_runs_waiting_for_their_runtime(pipeline, people):
    alice, bob, _ = people
    queue_runs(pipeline, alice, 1, queue="gpu")
    waiting_version = version_being_built(pipeline)
    Run.objects.create(pipeline=pipeline, version=waiting_version, kind="run", owner=bob, queue=QUEUE)
    assert lifecycle.claim_next(QUEUE, "w1", "none") is None
    assert Run.objects.filter(status="queued").count() == 2
    assert lifecycle.claim_next("gpu", "w1", "none").owner_id == alice.pk


def test_queue_position_counts_turns(pipeline, people):
    alice, bob, _ = people
    alices = queue_runs(pipeline, alice, 10)
    (bobs,) = queue_runs(pipeline, bob, 1)
    assert fairness.queue_position(bobs) == 2  # alice's oldest, then bob
    assert fairness.queue_position(alices[2]) == 4  # alice 0, 1, bob, alice 2
    assert fairness.queue_position(alices[0]) == 1


def test_queue_position_leaves_out_runs_on_a_runtime_being_built_and_reads_the_waiting_index(pipeline, people):
    """Runs waiting for their runtime's build are not in the line; with no build going on, the
    position is counted from the index of waiting runs alone (the run page asks every 3 s)."""
    alice, bob, _ = people
    ready = pipeline.latest_version
    unbuilt = version_being_built(pipeline)
    for _ in range(3):
        Run.objects.create(pipeline=pipeline, version=unbuilt, kind="run", owner=alice, queue=QUEUE)
    alices = [Run.objects.create(pipeline=pipeline, version=ready, kind="run", owner=alice) for _ in range(2)]
    bobs = Run.objects.create(pipeline=pipeline, version=ready, kind="run", owner=bob)
    assert [fairness.queue_position(run) for run in (*alices, bobs)] == [1, 3, 2]
    Runtime.objects.filter(pk=unbuilt.runtime_id).update(build_status=Runtime.Status.READY)
    # alice's three older runs can be taken now: one of them, bob's, the other two, then alice's two.
    assert [fairness.queue_position(run) for run in (*alices, bobs)] == [5, 6, 2]

    if connection.vendor == "sqlite":
        statement = fairness._earlier_of_owner_sql(*fairness._statement_key(QUEUE), False)
        created = connection.ops.adapt_datetimefield_value(bobs.created_at)
        with connection.cursor() as cursor:
            cursor.execute(
                "EXPLAIN QUERY PLAN " + statement.sql,
                statement.bind(queue=QUEUE, owner=bob.pk, created=created, pk=bobs.pk),
            )
            searches = [row[-1] for row in cursor.fetchall() if row[-1].startswith("SEARCH")]
        # One range for the default queue's name and one for runs without a queue.
        search = "SEARCH r USING INDEX run_waiting_owner_created (owner_id=? AND queue=? AND created_at<?)"
        assert searches == [search, search]


def test_usage_counts_running_and_queued_with_limits(pipeline, people):
    alice, _, _ = people
    RunLimits.objects.create(user=alice, max_queued=7)
    queue_runs(pipeline, alice, 3)
    lifecycle.claim_next(QUEUE, "w1", "none")
    assert fairness.usage_of(alice) == fairness.Usage(1, 2, fairness.Limits(settings.MLOPEN_USER_MAX_RUNNING, 7))
    old = Run.objects.filter(status="running").update(started_at=timezone.now() - timedelta(hours=1))
    assert old == 1


def test_a_run_with_no_queue_is_taken_by_the_default_queue_only(pipeline, people):
    alice, _, _ = people
    (unnamed,) = queue_runs(pipeline, alice, 1, queue="")
    assert lifecycle.claim_next("gpu", "w1", "none") is None
    assert lifecycle.claim_next(QUEUE, "w1", "none").pk == unnamed.pk


def test_the_user_served_longest_ago_goes_first_among_equals(pipeline, people):
    alice, bob, carol = people
    queue_runs(pipeline, alice, 1)
    queue_runs(pipeline, bob, 1)
    queue_runs(pipeline, carol, 1)
    long_ago = timezone.now() - timedelta(days=3)
    # bob was served three days ago, alice an hour ago, carol never: carol, bob, alice.
    for owner, started in ((bob, long_ago), (alice, timezone.now() - timedelta(hours=1))):
        Run.objects.create(
            pipeline=pipeline,
            version=pipeline.latest_version,
            kind="run",
            owner=owner,
            status="succeeded",
            started_at=started,
            finished_at=started,
        )
    free, blocked = fairness.owners_in_turn(QUEUE)
    assert (free, blocked) == ([carol.pk, bob.pk, alice.pk], [])


def test_the_turns_hold_exactly_the_users_with_a_run_a_worker_of_the_queue_could_take(pipeline, people):
    """Users found one index seek at a time (the loose scan) are the users SELECT DISTINCT found:
    queues kept apart, runs without a queue on the default one only, and a user whose every waiting
    run is on a runtime still being built left out until one of theirs is not."""
    alice, bob, carol = people
    make = get_user_model().objects.create_user
    dave, erin = make("dave", password="x"), make("erin", password="x")
    queue_runs(pipeline, erin, 2)
    queue_runs(pipeline, alice, 1, queue="gpu")
    queue_runs(pipeline, carol, 1, queue="")
    ready = pipeline.latest_version
    unbuilt = version_being_built(pipeline)
    for _ in range(3):
        Run.objects.create(pipeline=pipeline, version=unbuilt, kind="run", owner=bob, queue=QUEUE)
    Run.objects.create(pipeline=pipeline, version=ready, kind="run", owner=dave, queue=QUEUE)
    Run.objects.filter(owner=dave).update(status="running")  # a running run is not waiting

    # Fewest running first, then never served first, then by id.
    assert fairness.owners_in_turn(QUEUE) == ([carol.pk, erin.pk], [])
    assert fairness.owners_in_turn("gpu") == ([alice.pk], [])
    assert fairness.owners_in_turn("cpu") == ([], [])

    Run.objects.create(pipeline=pipeline, version=ready, kind="run", owner=bob, queue=QUEUE)  # after the unbuilt
    assert fairness.owners_in_turn(QUEUE) == ([bob.pk, carol.pk, erin.pk], [])
    # dave has one running: after those with none
    Run.objects.create(pipeline=pipeline, version=ready, kind="run", owner=dave, queue=QUEUE)
    assert fairness.owners_in_turn(QUEUE) == ([bob.pk, carol.pk, erin.pk, dave.pk], [])


def test_finding_whose_turn_it_is_seeks_each_user_in_the_waiting_runs_index(pipeline, people):
    """The claim's first statement reads one index entry per user, not every waiting run: with
    thousands waiting, reading them all cost 15-30 ms a claim. SQLite's plan is fixed by the schema;
    PostgreSQL's follows the table's statistics, which a test database does not have, so
    bench/scale.py measures it there, with 20 000 runs waiting."""
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL plans by statistics; bench/scale.py measures the claim there")
    statement = fairness._turns_statement(QUEUE)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + statement.sql, statement.bind(queue=QUEUE))
        plan = " | ".join(row[-1] for row in cursor.fetchall())
    assert "INDEX run_waiting_owner (queue=? AND owner_id>?)" in plan
    assert "DISTINCT" not in statement.sql.upper()


def test_queue_position_is_where_the_claims_take_each_run(pipeline, people):
    """Each run's position, asked before any is taken, is the turn one worker takes it in."""
    alice, bob, carol = people
    runs = queue_runs(pipeline, alice, 3) + queue_runs(pipeline, bob, 1) + queue_runs(pipeline, carol, 5)
    positions = {run.pk: fairness.queue_position(run) for run in runs}
    taken = []
    while (run := lifecycle.claim_next(QUEUE, "w1", "none")) is not None:
        taken.append(run.pk)
        finish(run)
    assert [positions[pk] for pk in taken] == list(range(1, len(runs) + 1))
    assert fairness.queue_position(Run.objects.get(pk=taken[0])) is None  # not queued any more


def test_after_a_run_the_check_for_unsent_runs_is_one_seek_and_ignores_other_states(pipeline, people):
    """Asked after every run: a finished run that never had a message is not waiting for one, and
    the statement goes to the index of waiting runs, not through every waiting run."""
    alice, _, _ = people
    (done,) = queue_runs(pipeline, alice, 1)
    Run.objects.filter(pk=done.pk).update(status="succeeded", enqueued_at=None)
    (waiting,) = queue_runs(pipeline, alice, 1)
    Run.objects.filter(pk=waiting.pk).update(enqueued_at=timezone.now())
    assert not sweep._any_waiting_run(sweep._UNSENT)
    Run.objects.filter(pk=waiting.pk).update(enqueued_at=None)
    assert sweep._any_waiting_run(sweep._UNSENT)

    assert sweep._WAITING_ENQUEUED_INDEX in {index.name for index in Run._meta.indexes}
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + sweep._waiting_run_sql("sqlite", sweep._UNSENT))
            assert "USING INDEX run_waiting_enqueued" in cursor.fetchall()[0][-1]


def test_the_beats_sweep_finds_nothing_due_with_two_seeks_and_still_resends_what_is_due(pipeline, people, monkeypatch):
    """Every beat of every worker: with runs waiting whose messages are younger than the wait, the
    sweep answers from the index of waiting runs' enqueued_at (two seeks), not by reading them all;
    a message older than the wait, or none, still sends the full sweep on its way."""
    sent = SentMessages()
    monkeypatch.setattr(sweep, "execute_run", sent)
    alice, bob, _ = people
    queue_runs(pipeline, alice, 5)
    (lost,) = queue_runs(pipeline, bob, 1)
    Run.objects.filter(pk=lost.pk).update(status="failed", enqueued_at=timezone.now() - timedelta(days=1))
    with CaptureQueriesContext(connection) as captured:
        assert sweep.requeue_lost_runs(wait=60) == []
    assert len(captured) == 2, [query["sql"] for query in captured]
    assert all(sweep._WAITING_ENQUEUED_INDEX in query["sql"] or connection.vendor != "sqlite" for query in captured)

    # Nearly due is not due: the range stops at the wait.
    Run.objects.filter(pk=lost.pk).update(status="queued", enqueued_at=timezone.now() - timedelta(seconds=50))
    assert sweep.requeue_lost_runs(wait=60) == []
    Run.objects.filter(pk=lost.pk).update(enqueued_at=timezone.now() - timedelta(seconds=70))
    assert sweep.requeue_lost_runs(wait=60) == [lost.pk]
    assert sent == [(lost.pk, QUEUE)]
    assert sweep.requeue_lost_runs(wait=60) == []  # stamped as sent just now

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            moments = ["2026-01-01", "2026-01-02"]
            cursor.execute("EXPLAIN QUERY PLAN " + sweep._waiting_run_sql("sqlite", sweep._DUE_AGAIN), moments)
            assert "USING INDEX run_waiting_enqueued" in cursor.fetchall()[0][-1]


def test_behind_a_backlog_the_beats_sweep_applies_the_doubling_rule_in_the_index(pipeline, people, monkeypatch):
    """Runs waiting longer than the re-send wait, each re-sent once already and not due again (it
    waited longer before that message than it has since): still two index reads on every beat,
    not a read of each run with the dates compared in Python. Due again once the time has doubled."""
    sent = SentMessages()
    monkeypatch.setattr(sweep, "execute_run", sent)
    alice, _, _ = people
    runs = queue_runs(pipeline, alice, 4)
    now = timezone.now()
    # Submitted 10 minutes ago, re-sent 3 minutes ago: next due 7 minutes after that re-send.
    Run.objects.update(created_at=now - timedelta(minutes=10), enqueued_at=now - timedelta(minutes=3))
    with CaptureQueriesContext(connection) as captured:
        assert sweep.requeue_lost_runs(wait=60) == []
    assert len(captured) == 2, [query["sql"] for query in captured]
    assert sent == []

    # One whose last message went out 6 minutes after submit, 7 minutes ago: due again.
    Run.objects.filter(pk=runs[1].pk).update(
        enqueued_at=now - timedelta(minutes=7), created_at=now - timedelta(minutes=13)
    )
    # One at the edge: it waited 5 minutes before its message, and 4 m 50 s since.
    Run.objects.filter(pk=runs[2].pk).update(
        enqueued_at=now - timedelta(minutes=4, seconds=50), created_at=now - timedelta(minutes=9, seconds=50)
    )
    assert sweep.requeue_lost_runs(wait=60) == [runs[1].pk]
    assert sent == [(runs[1].pk, QUEUE)]


def test_a_queue_name_that_is_not_plain_is_a_parameter_never_sql(pipeline, people):
    """Plain queue names go into the claim's SQL as literals; any other stays a bound parameter."""
    alice, bob, _ = people
    odd = "q'); DROP TABLE runs_run; --"
    assert fairness._queue_in_sql("gpu-2.large") == "'gpu-2.large'"
    assert fairness._queue_in_sql(odd) == "%(queue)s"
    (first,) = queue_runs(pipeline, alice, 1, queue=odd)
    (second,) = queue_runs(pipeline, bob, 1, queue=odd)
    queue_runs(pipeline, bob, 1)  # the default queue's, not this one's
    assert fairness.owners_in_turn(odd) == ([alice.pk, bob.pk], [])
    assert fairness.queue_position(second) == 2
    assert lifecycle.claim_next(odd, "w1", "none").pk == first.pk
    assert Run.objects.count() == 3
