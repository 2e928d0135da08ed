"""What notifications does when the run layer says a run ended (mlopen.runs.events)."""

from __future__ import annotations

from django.dispatch import receiver

from mlopen.notifications import services
from mlopen.runs import events


@receiver(events.run_finished, dispatch_uid="mlopen.notifications.webhooks")
def queue_webhooks(sender, run_id: int, **kwargs) -> None:
    services.dispatch_finished(run_id)


@receiver(events.run_finished, dispatch_uid="mlopen.notifications.email")
def queue_email(sender, run_id: int, **kwargs) -> None:
    services.queue_email(run_id)
