"""Webhooks: a user's URL called when their runs end, and the log of those calls."""

from __future__ import annotations

from django.conf import settings
from django.db import models

EVENTS = ("run.succeeded", "run.failed", "run.cancelled")
MAX_URL_LENGTH = 2048
# Deliveries kept per webhook: the log is for seeing what happened lately, not an archive.
DELIVERIES_KEPT = 50


class Webhook(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhooks")
    url = models.CharField(max_length=MAX_URL_LENGTH)
    events = models.JSONField(default=list, help_text="the events it is called for: run.succeeded, run.failed...")
    pipeline = models.ForeignKey(
        "pipelines.Pipeline",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhooks",
        help_text="only this pipeline's runs; empty: every run of the owner",
    )
    secret = models.CharField(max_length=64, help_text="signs each call (HMAC-SHA256); shown once, at creation")
    active = models.BooleanField(default=True)
    failing = models.BooleanField(default=False, help_text="its last delivery gave up after every retry")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"webhook {self.pk} → {self.url[:80]}"


class WebhookDelivery(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"  # queued, or waiting for its next try
        DELIVERED = "delivered"  # the receiver answered 2xx
        FAILED = "failed"  # refused (4xx, forbidden address) or out of retries

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32)
    run = models.ForeignKey("runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    state = models.CharField(max_length=9, choices=State.choices, default=State.PENDING)
    status_code = models.PositiveIntegerField(null=True, blank=True, help_text="the receiver's last answer")
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="why the last try failed")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["webhook", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.event} of run {self.run_id} to webhook {self.webhook_id}: {self.state}"


class NotificationPreference(models.Model):
    """What a user is told when their runs end: by e-mail and in their open browser tabs.

    The row without a pipeline is the user's default; a row for a pipeline overrides it, both
    channels at once, for that pipeline's runs. No row at all: DEFAULT_EMAIL and DEFAULT_BROWSER.
    """

    class Choice(models.TextChoices):
        OFF = "off", "never"
        ALL = "all", "every finished run"
        FAILURES = "failures", "failed runs only"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    pipeline = models.ForeignKey(
        "pipelines.Pipeline",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="only this pipeline's runs; empty: the user's default for every pipeline",
    )
    email = models.CharField(max_length=8, choices=Choice.choices, default=Choice.OFF)
    browser = models.CharField(max_length=8, choices=Choice.choices, default=Choice.ALL)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user", "pipeline__name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "pipeline"], name="one_preference_per_pipeline"),
            models.UniqueConstraint(
                fields=["user"], condition=models.Q(pipeline__isnull=True), name="one_default_preference"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.pipeline_id or 'default'}: email {self.email}, browser {self.browser}"

    @staticmethod
    def wants(choice: str, status: str) -> bool:
        """Whether a channel set to ``choice`` tells about a run that ended with ``status``."""
        return choice == "all" or (choice == "failures" and status == "failed")


# No preference stored: no e-mail (nobody gets mail they did not ask for), and the open tab says so
# (a browser shows nothing until its user allowed notifications from a button).
DEFAULT_EMAIL = NotificationPreference.Choice.OFF
DEFAULT_BROWSER = NotificationPreference.Choice.ALL
