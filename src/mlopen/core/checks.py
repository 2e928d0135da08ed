"""Configuration mistakes caught at start-up (`mlopen manage check`)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register

from mlopen.core import storage
from mlopen_runner import sandbox


def _folder_error(folder, hint: str, check_id: str) -> list:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return [Error(f"Folder {folder} is not writable: {exc}", hint=hint, id=check_id)]
    return []


@register()
def storage_folder_writable(app_configs, **kwargs):
    if settings.MLOPEN_STORAGE_URL:
        # Object storage: this host keeps its copies of stored files in the cache folder instead.
        return _folder_error(
            settings.MLOPEN_STORAGE_CACHE_DIR, "Set MLOPEN_STORAGE_CACHE_DIR to a writable folder.", "mlopen.E003"
        )
    return _folder_error(settings.MLOPEN_STORAGE_DIR, "Set MLOPEN_STORAGE_DIR to a writable folder.", "mlopen.E001")


@register()
def object_storage_reachable(app_configs, **kwargs):
    """With MLOPEN_STORAGE_URL, the bucket must answer with the credentials given (one small listing)."""
    if not settings.MLOPEN_STORAGE_URL:
        return []
    state = storage.probe()
    if state == "ok":
        return []
    return [
        Error(
            f"Object storage cannot be reached: {state.removeprefix('error: ')}",
            hint="Check the bucket name, AWS_S3_ENDPOINT_URL, AWS_S3_REGION_NAME and the credentials "
            "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).",
            id="mlopen.E002",
        )
    ]


@register(deploy=True)
def production_broker(app_configs, **kwargs):
    if settings.PRODUCTION and settings.CELERY_BROKER_URL.startswith("filesystem://") and settings.DATABASE_URL:
        return [
            Warning(
                "A folder broker with an external database: workers on other hosts cannot see the queue.",
                hint="Set CELERY_BROKER_URL to redis:// or amqp:// when workers run on several hosts.",
                id="mlopen.W001",
            )
        ]
    return []


@register(deploy=True)
def sandbox_available(app_configs, **kwargs):
    """MLOPEN_SANDBOX=bubblewrap (the production default): this host must be able to create the sandbox,
    or its workers refuse to start and its web server refuses uploads (their forms are read in it)."""
    if settings.MLOPEN_SANDBOX != "bubblewrap":
        return []
    try:
        sandbox.require()
    except sandbox.SandboxUnavailable as exc:
        return [Error(str(exc), id="mlopen.E004")]  # says how to install bubblewrap or opt out
    return []
