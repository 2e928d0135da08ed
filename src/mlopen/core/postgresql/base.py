"""Django's PostgreSQL backend, with a check of a kept connection that asks the server nothing.

A connection kept between requests and tasks (CONN_MAX_AGE) is checked before its first use in
each (CONN_HEALTH_CHECKS), so that one the server has ended is replaced instead of failing the
request. Django checks with a SELECT 1: a round trip on every request and every task, two for each
run (its POST and its worker's task), 0.06-0.1 ms each on a quiet host and several times that on
a busy one.

A server that ends a session (a restart, pg_terminate_backend, idle_session_timeout, a crash) says
so and closes the socket, and either makes the socket readable. So an idle connection with nothing
to read on its socket is taken as usable without asking (a poll with no wait, about 1 µs); one
with something to read (that, or a notification a LISTEN left behind), in a transaction, or that
cannot be looked at this way gets Django's SELECT 1, as before.

What this check cannot see: a session ended a moment ago whose message is still on its way, and a
server gone without a word (a cut network; the SELECT 1 only waited for TCP to give up there). The
first query then fails instead: a request answers 503 with Retry-After (core.outages), and a
worker's first query of a task is tried again on a fresh connection (runs.execution).
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        if self.connection is not None and _idle_and_silent(self.connection):
            return True
        return super().is_usable()


def _idle_and_silent(connection) -> bool:
    """Whether ``connection`` (psycopg's) is open, outside a transaction, with nothing to read."""
    try:
        if connection.closed or connection.broken:
            return False
        if connection.info.transaction_status != base.Database.pq.TransactionStatus.IDLE:
            return False
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
        return not poller.poll(0)  # hang-ups and errors are reported whatever the mask
    except (AttributeError, OSError, ValueError, base.Database.Error):  # psycopg2, a closed socket
        return False
