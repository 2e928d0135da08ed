"""On PostgreSQL a kept connection is checked by its socket, not a SELECT 1 (mlopen.core.postgresql):
an idle connection with nothing to read is used without asking the server, and one the server has
ended, or with anything else to read, gets Django's SELECT 1 and its answer."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection, connections
from django.db.backends.postgresql import base as django_postgresql

from mlopen.core.postgresql import base as mlopen_postgresql

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the socket check is PostgreSQL's"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def kept():
    """A connection of its own to the test database, open and idle, as one kept between requests."""
    wrapper = connections.create_connection("default")
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


@pytest.fixture
def other(kept):
    """A second session on the same database, to act on the kept one from outside."""
    with psycopg.connect(**kept.get_connection_params(), autocommit=True) as session:
        yield session


@pytest.fixture
def asked(monkeypatch) -> list[str]:
    """The SELECT 1 checks that reached the server (Django's is_usable), recorded as they pass."""
    calls: list[str] = []
    real = django_postgresql.DatabaseWrapper.is_usable

    def recorded(self):
        calls.append("SELECT 1")
        return real(self)

    monkeypatch.setattr(django_postgresql.DatabaseWrapper, "is_usable", recorded)
    return calls


def wait_until_readable(wrapper, seconds: float = 10.0) -> None:
    """What the server sends arrives when it arrives: wait for it, not for a fixed time."""
    deadline = time.monotonic() + seconds
    while mlopen_postgresql._idle_and_silent(wrapper.connection):
        assert time.monotonic() < deadline, "the server's message never reached the socket"
        time.sleep(0.01)


def test_the_backend_is_mlopens_and_an_idle_kept_connection_is_usable_without_a_round_trip(kept, asked):
    assert isinstance(kept, mlopen_postgresql.DatabaseWrapper)

    assert kept.is_usable() is True
    assert asked == []


def test_a_connection_the_server_ended_is_found_unusable(kept, other, asked):
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [kept.connection.info.backend_pid])
    wait_until_readable(kept)

    assert kept.is_usable() is False
    assert asked == ["SELECT 1"]  # the socket said something: the server was asked, and could not answer


def test_a_connection_with_a_notification_waiting_is_asked_and_stays_usable(kept, other, asked):
    with kept.connection.cursor() as cursor:
        cursor.execute("LISTEN mlopen_connection_check")
    with other.cursor() as cursor:
        cursor.execute("NOTIFY mlopen_connection_check, 'hello'")
    wait_until_readable(kept)

    assert kept.is_usable() is True
    assert asked == ["SELECT 1"]


def test_a_connection_inside_a_transaction_is_asked(kept, asked):
    kept.connection.execute("BEGIN")
    try:
        assert kept.is_usable() is True
    finally:
        kept.connection.execute("ROLLBACK")
    assert asked == ["SELECT 1"]
