"""The Celery application. Workers only execute runs; see mlopen.runs.tasks."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

from mlopen.core import broker

broker.install()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlopen.settings")

app = Celery("mlopen")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _ensure_broker_folders() -> None:
    """The folder broker fails on a missing folder instead of creating it."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


if str(app.conf.broker_url or "").startswith("filesystem://"):
    _ensure_broker_folders()
app.autodiscover_tasks(["mlopen.runs", "mlopen.pipelines", "mlopen.notifications"])
