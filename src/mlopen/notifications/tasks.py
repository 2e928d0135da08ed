"""Celery tasks for notifications: thin, named, ids only. The work is mlopen.notifications.delivery
(webhooks) and mlopen.notifications.mail (e-mail)."""

from __future__ import annotations

import smtplib

from celery import shared_task

from mlopen.notifications import delivery, mail

DELIVER_TASK = "mlopen.deliver_webhook"
EMAIL_TASK = "mlopen.send_run_email"
# Tries after the first, and the pause before each: about a quarter of an hour in all.
RETRY_DELAYS_SECONDS = (2, 10, 60, 180, 600)


@shared_task(name=DELIVER_TASK, bind=True, ignore_result=True, max_retries=len(RETRY_DELAYS_SECONDS))
def deliver_webhook(self, *, delivery_id: int) -> None:
    tries_done = self.request.retries
    outcome = delivery.deliver(delivery_id, last_try=tries_done >= len(RETRY_DELAYS_SECONDS))
    if outcome.retry:
        raise self.retry(countdown=RETRY_DELAYS_SECONDS[tries_done], queue=outcome.queue)


@shared_task(
    name=EMAIL_TASK,
    ignore_result=True,
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=10,
    max_retries=len(RETRY_DELAYS_SECONDS),
)
def send_run_email(*, run_id: int) -> None:
    mail.send_run_email(run_id)
