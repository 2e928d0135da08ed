"""Helpers for tests that start processes of their own (workers, servers), importable by name."""

from __future__ import annotations

from django.db import connection


def database_url() -> str:
    """DATABASE_URL for another process (a worker, a server) sharing this test session's database."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return (
        f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        f"{db['NAME']}"
    )
