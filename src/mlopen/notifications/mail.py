"""E-mail about a finished run, through Django's mail framework (EMAIL_URL picks the backend).

The receiver only decides and queues (``services.queue_email``, after the finishing transaction commits);
a worker renders and sends the message (``tasks.send_run_email`` → ``send_run_email``), so a slow
or absent mail server never holds up the run's own path.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from mlopen.runs.models import Run

log = logging.getLogger(__name__)

SYMBOL = {"succeeded": "✓", "failed": "✗", "cancelled": "■"}


def subject_of(run: Run) -> str:
    return f"{SYMBOL.get(run.status, '')} run #{run.pk} {run.status}: {run.pipeline.name} ({run.kind})".strip()


def send_run_email(run_id: int) -> bool:
    """Render and send the message about a finished run; False when there is nothing to send (the
    run or its owner's address is gone). A mail server's error propagates: the task retries it."""
    run = Run.objects.filter(pk=run_id).select_related("owner", "pipeline", "version").first()
    if run is None or run.status not in Run.FINISHED or not run.owner.email:
        return False
    page = settings.MLOPEN_BASE_URL + reverse("web:run-detail", args=[run.pk])
    preferences_page = settings.MLOPEN_BASE_URL + reverse("web:notification-preferences")
    context = {"run": run, "page": page, "preferences_page": preferences_page}
    body = render_to_string("notifications/run_finished.txt", context)
    send_mail(subject_of(run), body, settings.DEFAULT_FROM_EMAIL, [run.owner.email], fail_silently=False)
    log.info("run %s: e-mail sent to its owner (%s)", run.pk, run.status)
    return True
