"""The folder broker (mlopen.core.broker): whole messages only, and a consumer woken by new ones."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest
from kombu import Connection

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux only")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    # One folder for the module: kombu remembers a transport's folders per process, so connections
    # to a second folder in the same process would publish into the first.
    return tmp_path_factory.mktemp("broker")


def _connection(folder) -> Connection:
    from mlopen.core import broker

    broker.install()
    return Connection(
        "filesystem://",
        transport_options={
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(folder / "control"),
            "polling_interval": 120,  # so long that only the folder watch can deliver within a test
        },
    )


def test_a_message_is_written_under_a_hidden_name_and_renamed_into_place(folder):
    with _connection(folder) as connection:
        queue = connection.SimpleQueue("written")
        queue.put({"run_id": 1})

        names = [name for name in os.listdir(folder) if name.endswith(".written.msg")]

        assert len(names) == 1 and not names[0].startswith(".")
        assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]
        queue.get(timeout=5).ack()
        queue.close()


def test_a_waiting_consumer_is_woken_by_a_new_message_not_by_its_polling_interval(folder):
    received = []
    with _connection(folder) as consumer_connection, _connection(folder) as producer_connection:
        consumer = consumer_connection.SimpleQueue("q")
        producer = producer_connection.SimpleQueue("q")

        def consume():
            message = consumer.get(block=True, timeout=60)
            received.append(message.payload)
            message.ack()

        thread = threading.Thread(target=consume)
        thread.start()
        time.sleep(0.3)  # the consumer has looked, found nothing and gone to sleep on the folder
        producer.put({"run_id": 7})
        thread.join(90)

        # With only polling (every 120 s) the consumer would still be asleep, or would have given
        # up after 60 s with nothing.
        assert received == [{"run_id": 7}]
        consumer.close()
        producer.close()


def test_a_folder_that_cannot_be_watched_falls_back_to_polling(folder, monkeypatch):
    from mlopen.core import broker

    def refuse(folder):
        raise OSError("inotify watch limit reached")

    monkeypatch.setattr(broker, "FolderWatch", refuse)
    with _connection(folder) as connection:
        transport = connection.transport

        assert transport._folder_watch() is None
        assert transport._watch_failed


def _wait_for(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_idle_consumers_of_one_queue_take_turns_and_only_the_one_in_turn_lists_the_folder(folder, monkeypatch):
    from mlopen.core import broker

    events: list[tuple[str, object]] = []  # ("list", transport) / ("pass", turn), in order
    real_get, real_pass_on = broker.Channel._get, broker.ListenerTurn.pass_on

    def listing(channel, queue):
        events.append(("list", channel.connection))
        return real_get(channel, queue)

    def passing(turn):
        events.append(("pass", turn))
        return real_pass_on(turn)

    monkeypatch.setattr(broker.Channel, "_get", listing)
    monkeypatch.setattr(broker.ListenerTurn, "pass_on", passing)
    received: dict[str, list] = {"a": [], "b": []}

    with _connection(folder) as a, _connection(folder) as b, _connection(folder) as producer_connection:
        queues = {"a": a.SimpleQueue("turns"), "b": b.SimpleQueue("turns")}
        producer = producer_connection.SimpleQueue("turns")

        def consume(name):
            message = queues[name].get(block=True, timeout=60)
            received[name].append(message.payload)
            message.ack()

        first = threading.Thread(target=consume, args=("a",))
        first.start()
        _wait_for(lambda: a.transport._turn is not None and a.transport._turn.held)
        second = threading.Thread(target=consume, args=("b",))
        second.start()
        time.sleep(0.3)  # b has woken, found the turn taken and gone to sleep on the folder
        assert b.transport._turn is not None and not b.transport._turn.held
        events.clear()

        producer.put({"run_id": 1})
        first.join(30)
        assert received["a"] == [{"run_id": 1}]
        # b listed nothing until a had taken the message and passed the turn on ...
        passed = events.index(("pass", a.transport._turn))
        assert ("list", b.transport) not in events[:passed]
        # ... and then took the turn, and is the one that gets the next message.
        _wait_for(lambda: b.transport._turn.held)
        producer.put({"run_id": 2})
        second.join(30)
        assert received["b"] == [{"run_id": 2}]
        for queue in (*queues.values(), producer):
            queue.close()


def test_consumers_of_different_queues_each_have_a_turn(folder):
    with _connection(folder) as a, _connection(folder) as b, _connection(folder) as producer_connection:
        on_a, on_b = a.SimpleQueue("only-a"), b.SimpleQueue("only-b")
        received = []

        def consume():
            message = on_b.get(block=True, timeout=60)
            received.append(message.payload)
            message.ack()

        idle_a = threading.Thread(target=lambda: pytest.raises(on_a.Empty, on_a.get, block=True, timeout=3))
        idle_a.start()
        _wait_for(lambda: a.transport._turn is not None and a.transport._turn.held)
        thread = threading.Thread(target=consume)
        thread.start()
        # a listens for its queue; b, listening for another, holds a turn of its own and gets its message.
        _wait_for(lambda: b.transport._turn is not None and b.transport._turn.held)
        assert a.transport._turn.held  # both at once: the turns are not shared
        producer = producer_connection.SimpleQueue("only-b")
        producer.put({"run_id": 3})
        thread.join(30)
        idle_a.join(30)
        assert received == [{"run_id": 3}]
        for queue in (on_a, on_b, producer):
            queue.close()


@pytest.mark.parametrize("exit_code", [0, 1])
def test_a_consumer_told_to_stop_returns_from_its_sleep_instead_of_waiting_out_celerys_timeout(
    folder, monkeypatch, exit_code
):
    """Celery's SIGTERM handler only sets celery.worker.state.should_stop (to the exit code, 0
    included) and reads it once drain_events returns; a consumer that kept sleeping until its 2 s
    timeout made every worker take seconds to stop."""
    from celery.worker import state

    from mlopen.core import broker

    sleeps = []

    def sleep(self, seconds):
        sleeps.append(seconds)
        if len(sleeps) > 5:
            raise AssertionError("still sleeping on the folder after being told to stop")
        return set()

    monkeypatch.setattr(broker.FolderWatch, "sleep", sleep)
    with _connection(folder) as connection:
        queue = connection.SimpleQueue("stopping")
        # Not told to stop: it sleeps on (and the fake sleep gives up after five naps).
        with pytest.raises(AssertionError, match="still sleeping"):
            connection.drain_events(timeout=None)
        sleeps.clear()
        queue.put({"run_id": 9})
        monkeypatch.setattr(state, "should_stop", exit_code)
        with pytest.raises(TimeoutError):
            connection.drain_events(timeout=None)
        assert sleeps == []  # back to Celery at once, without a nap
        # A worker that is stopping takes no new message: it stays for another worker.
        assert [name for name in os.listdir(folder) if name.endswith(".stopping.msg")]
        monkeypatch.setattr(state, "should_stop", None)
        message = queue.get(timeout=5)
        message.ack()
        assert message.payload == {"run_id": 9}
        queue.close()
