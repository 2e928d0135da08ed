"""Doorbells (mlopen.core.doorbell): a ring wakes the sleepers of its topic, and only them."""

from __future__ import annotations

import os
import socket
import threading

from mlopen.core import doorbell


def test_a_ring_wakes_the_doorbell_of_its_topic(tmp_path):
    with doorbell.Doorbell.open(tmp_path / "bells", "12") as bell:
        woke = []
        sleeper = threading.Thread(target=lambda: woke.append(bell.wait(30)))
        sleeper.start()

        assert doorbell.ring(tmp_path / "bells", "12") == 1

        sleeper.join(30)
        assert woke == [True]


def test_a_ring_of_another_topic_does_not_wake_it(tmp_path):
    with doorbell.Doorbell.open(tmp_path, "12") as bell:
        assert doorbell.ring(tmp_path, "1") == 0
        assert doorbell.ring(tmp_path, "123") == 0
        assert bell.wait(0.05) is False


def test_every_doorbell_of_a_topic_rings(tmp_path):
    with doorbell.Doorbell.open(tmp_path, "7") as first, doorbell.Doorbell.open(tmp_path, "7") as second:
        assert doorbell.ring(tmp_path, "7") == 2
        assert first.wait(5) and second.wait(5)


def test_a_ring_before_the_wait_is_kept_until_it(tmp_path):
    with doorbell.Doorbell.open(tmp_path, "3") as bell:
        doorbell.ring(tmp_path, "3")
        assert bell.wait(0) is True


def test_a_closed_doorbell_leaves_nothing_behind(tmp_path):
    with doorbell.Doorbell.open(tmp_path, "5"):
        assert len(os.listdir(tmp_path)) == 1
    assert os.listdir(tmp_path) == []
    assert doorbell.ring(tmp_path, "5") == 0


def test_a_doorbell_left_by_a_dead_process_is_removed_by_the_next_ring(tmp_path):
    orphan = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    orphan.bind(str(tmp_path / "9.deadbeef"))
    orphan.close()  # its process died without removing the file

    assert doorbell.ring(tmp_path, "9") == 0
    assert os.listdir(tmp_path) == []


def test_ringing_a_folder_nobody_made_yet_rings_nobody(tmp_path):
    assert doorbell.ring(tmp_path / "never", "1") == 0


def test_a_folder_deeper_than_a_socket_path_may_be_still_works(tmp_path):
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 6)  # well past the 107 bytes of sun_path
    assert len(str(deep)) > 120

    with doorbell.Doorbell.open(deep, "4") as bell:
        assert doorbell.ring(deep, "4") == 1
        assert bell.wait(5) is True
