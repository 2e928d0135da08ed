"""What /healthz reports: can this web server reach its database, broker and storage, how much room is
left on the disk holding MLOPEN_HOME, which workers live, and where each of them runs pipelines (inside
bubblewrap or not). Here, not in core, because it reads the live workers."""

from __future__ import annotations

import shutil

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from mlopen.celery_app import app
from mlopen.core import storage
from mlopen.core.access import PUBLIC, access
from mlopen.runs.workers import live_workers
from mlopen_runner import sandbox_status


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
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc.__class__.__name__}: {exc}"[:300]


def check_storage() -> str:
    return storage.probe()


def check_disk() -> dict:
    """Room on the disk holding MLOPEN_HOME (the database, broker folders, stored files and run folders
    unless moved elsewhere); "low" under MLOPEN_MIN_FREE_DISK_MB, before uploads and runs start failing."""
    minimum = settings.MLOPEN_MIN_FREE_DISK_MB
    try:
        usage = shutil.disk_usage(settings.MLOPEN_HOME)
    except OSError as exc:
        return {"status": f"error: {settings.MLOPEN_HOME}: {exc.strerror}", "min_free_mb": minimum}
    mb = 1024 * 1024
    # As df counts it: blocks kept for root are neither used nor free to mlopen.
    used_percent = round(100 * usage.used / (usage.used + usage.free), 1) if usage.used + usage.free else 0.0
    return {
        "status": "low" if usage.free < minimum * mb else "ok",
        "free_mb": usage.free // mb,
        "total_mb": usage.total // mb,
        "used_percent": used_percent,
        "min_free_mb": minimum,
    }


def worker_sandboxes() -> list[dict]:
    """Each live worker and where it runs pipelines, as it said itself when it started (Worker.sandbox,
    "kind: reason"): the web server's own sandbox says nothing about the workers' hosts."""
    listed = []
    for name, hostname, described in live_workers().order_by("name").values_list("name", "hostname", "sandbox"):
        kind, _, reason = described.partition(": ")
        if kind not in ("bubblewrap", "process"):  # a worker that did not say
            kind, reason = "unknown", described or "this worker did not report its sandbox"
        listed.append(
            {"name": name, "hostname": hostname, "sandbox": kind, "sandboxed": kind == "bubblewrap", "reason": reason}
        )
    return listed


def sandbox_summary(listed: list[dict]) -> tuple[str, str]:
    """("bubblewrap" only when every live worker is sandboxed, else "none", "mixed" or "unknown"; a note)."""
    if not listed:
        return "unknown", "No live worker: nothing can say where pipelines would run."
    unsandboxed = [worker["name"] for worker in listed if not worker["sandboxed"]]
    if not unsandboxed:
        return "bubblewrap", ""
    note = (
        f"{len(unsandboxed)} of {len(listed)} live worker(s) run pipelines without a sandbox, with their own "
        f"access to their host: {', '.join(unsandboxed)} (see live_workers)."
    )
    return ("none" if len(unsandboxed) == len(listed) else "mixed"), note


def report() -> tuple[dict, bool]:
    database = check_database()
    broker = check_broker()
    stored = check_storage()
    disk = check_disk()
    reachable = database == "ok" and broker == "ok" and stored == "ok"
    healthy = reachable and disk["status"] == "ok"
    listed = []
    if database == "ok":
        listed = worker_sandboxes()
    summary, note = sandbox_summary(listed)
    # This web server runs pipeline code too: a control file's get_params, at upload.
    web = sandbox_status()
    body: dict[str, object] = {
        # "degraded": everything answers, but the disk is about to refuse uploads and runs.
        "status": "ok" if healthy else ("degraded" if reachable and disk["status"] == "low" else "error"),
        "database": database,
        "broker": broker,
        "storage": stored,
        "disk": disk,
        "workers": len(listed),
        "sandbox": summary,
        "live_workers": listed,
        "web_sandbox": web["kind"],
    }
    if web["kind"] != "bubblewrap":
        refused = web.get("mode") == "bubblewrap"  # then it refuses uploads rather than read them unsandboxed
        web_note = "cannot read uploaded control files" if refused else "reads uploaded control files unsandboxed"
        note = f"{note} This web server {web_note}: {web.get('reason', '')}.".strip()
    if note:
        body["sandbox_note"] = note
    failing = [part for part in ("database", "broker", "storage") if body[part] != "ok"]
    if disk["status"].startswith("error"):
        failing.append("disk")
    if failing:
        body["failing"] = failing
    if disk["status"] == "low":
        body["degraded"] = ["disk"]
        body["disk_note"] = (
            f"Only {disk['free_mb']} MB free on the disk holding MLOPEN_HOME, under MLOPEN_MIN_FREE_DISK_MB "
            f"({disk['min_free_mb']} MB): uploads and runs will soon fail for lack of space."
        )
    return body, healthy


@access(PUBLIC)
@never_cache
@require_GET
def healthz(request):
    """No login: load balancers and `mlopen serve` itself poll this."""
    body, healthy = report()
    return JsonResponse(body, status=200 if healthy else 503)
