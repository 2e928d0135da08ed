"""Configuration mistakes caught at start-up (`mlopen manage check`)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def storage_folder_writable(app_configs, **kwargs):
    folder = settings.MLOPEN_STORAGE_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return [Error(f"Storage folder {folder} is not writable: {exc}", hint="Set MLOPEN_STORAGE_DIR to a writable folder.",
                      id="mlopen.E001")]
    return []


@register(deploy=True)
def production_broker(app_configs, **kwargs):
    if settings.PRODUCTION and settings.CELERY_BROKER_URL.startswith("filesystem://") and settings.DATABASE_URL:
        return [Warning("A folder broker with an external database: workers on other hosts cannot see the queue.",
                        hint="Set CELERY_BROKER_URL to redis:// or amqp:// when workers run on several hosts.",
                        id="mlopen.W001")]
    return []
