"""The Celery application. Workers only execute runs; see mlopen.runs.tasks."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlopen.settings")

app = Celery("mlopen")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["mlopen.runs", "mlopen.pipelines"])
