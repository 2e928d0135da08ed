"""Helpers for tests that start processes of their own (workers, servers), importable by name."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

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


# The default runtime, built once for every test process and every `./run-tests` on this host (its
# folder is named by its lock's digest, so a changed lock builds a new one), and kept like the uv
# cache. Each test home gets hard links to it (seed_default_runtime): CI's two test processes and
# its PostgreSQL pass built it three times (20-30 s each on a busy 2-core host) before.
SHARED_RUNTIMES = Path(tempfile.gettempdir()) / f"mlopen-test-runtimes-{os.getuid()}"


def seed_default_runtime(home: Path) -> Path:
    """Give the MLOPEN_HOME ``home`` the built default runtime, as hard links to the shared build;
    return its python.

    For tests whose subject is not the build: the build itself is tested where a home starts empty
    (test_runtimes, test_scale_out, test_s3_storage, the demo run of test_serve).
    """
    from django.conf import settings
    from django.test import override_settings

    from mlopen.pipelines import runtimes

    lock = runtimes.lock_of(settings.MLOPEN_DEFAULT_RUNTIME)
    digest = runtimes.digest_of(lock)
    with override_settings(MLOPEN_HOME=SHARED_RUNTIMES):
        runtimes.ensure_built(digest, lock)
        built = runtimes.venv_path(digest)
    with override_settings(MLOPEN_HOME=home):
        target = runtimes.venv_path(digest)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(target.name + ".seeding")
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(built, scratch, symlinks=True, copy_function=os.link)
        scratch.rename(target)
    return target / "bin" / "python"
