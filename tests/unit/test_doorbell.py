"""Doorbells (mlopen.core.doorbell): a ring wakes the sleepers of its topic, and only them."""

from __future__ import annotations

import os
import socket
import threading

import pytest

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


def test_a_database_named_two_ways_has_one_doorbells_folder(tmp_path, monkeypatch):
    """A web server on MLOPEN_HOME and a worker given DATABASE_URL through a link must meet."""
    from django.db import connection

    from mlopen.runs import waiting

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's doorbells only")
    (tmp_path / "db.sqlite3").touch()
    (tmp_path / "link").symlink_to(tmp_path)
    (tmp_path / "sub").mkdir()
    folders = set()
    for name in (tmp_path / "db.sqlite3", tmp_path / "link" / "db.sqlite3", tmp_path / "sub" / ".." / "db.sqlite3"):
        monkeypatch.setitem(connection.settings_dict, "NAME", str(name))
        folders.add(waiting._doorbells_folder())

    assert folders == {tmp_path.resolve() / "db.sqlite3-waiting"}
