"""What /healthz reports: can this web server reach its database, broker and storage, and how many workers live."""

from __future__ import annotations

from django.conf import settings
from django.db import connection


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        return f"error: {exc.__class__.__name__}: {exc}"[:300]


def check_broker() -> str:
    if settings.MLOPEN_BROKER_DIR is not None:
        folder = settings.MLOPEN_BROKER_DIR
        try:
            for sub in ("queue", "control", "processed"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            return "ok"
        except OSError as exc:
            return f"error: broker folder {folder}: {exc}"
    from mlopen.celery_app import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc.__class__.__name__}: {exc}"[:300]


def check_storage() -> str:
    from mlopen.core import storage

    return storage.probe()


def report() -> tuple[dict, bool]:
    from mlopen.runs.workers import fail_lost_runs, live_workers
    from mlopen_runner import sandbox_status

    database = check_database()
    broker = check_broker()
    stored = check_storage()
    healthy = database == "ok" and broker == "ok" and stored == "ok"
    workers = 0
    if database == "ok":
        workers = live_workers().count()
        try:
            fail_lost_runs()  # polled often, so it notices even when the last worker died
        except Exception:  # noqa: BLE001 - a busy database must not make the health check fail
            pass
    sandbox = sandbox_status()
    body = {"status": "ok" if healthy else "error", "database": database, "broker": broker, "storage": stored,
            "workers": workers,
            "sandbox": sandbox["kind"]}
    if sandbox["kind"] != "bubblewrap":
        body["sandbox_note"] = sandbox.get("reason", "")
    failing = [part for part in ("database", "broker", "storage") if body[part] != "ok"]
    if failing:
        body["failing"] = failing
    return body, healthy
