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
