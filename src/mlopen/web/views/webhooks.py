from django.db.models import Prefetch
from django.shortcuts import render

from mlopen.core.access import LOGGED_IN, access
from mlopen.notifications.models import Webhook, WebhookDelivery

DELIVERIES_SHOWN = 10


@access(LOGGED_IN)
def webhook_list(request):
    """One's own webhooks, each with its latest deliveries; they are created through the API."""
    webhooks = list(
        Webhook.objects.filter(owner=request.user)
        .select_related("pipeline")
        .prefetch_related(Prefetch("deliveries", queryset=WebhookDelivery.objects.order_by("-created_at", "-pk")))
    )
    for webhook in webhooks:
        webhook.recent = list(webhook.deliveries.all())[:DELIVERIES_SHOWN]
    return render(request, "web/webhooks.html", {"webhooks": webhooks})
