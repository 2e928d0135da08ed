"""Helpers for tests that start processes of their own (workers, servers), importable by name."""

from __future__ import annotations

import os

from django.db import connection


def database_url() -> str:
    """DATABASE_URL for another process (a worker, a server) sharing this test session's database."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return (
        f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        f"{db['NAME']}"
    )


# What any host's worker needs from its own machine to reach the package index (a CA bundle, a
# proxy, an index mirror), plus this session's shared uv cache so a runtime is not downloaded again.
_HOST_NETWORK = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_NATIVE_TLS",
    "MLOPEN_UV_CACHE_DIR",
)


def host_network_env() -> dict:
    """The variables of _HOST_NETWORK this machine sets: for a worker started with an environment
    of its own (a "remote host"), which builds runtimes like any host."""
    return {name: os.environ[name] for name in _HOST_NETWORK if name in os.environ}
