"""One call of a webhook: the signed POST, and what its answer means for the delivery's log.

The body is JSON, ``{"event", "delivery", "run": {...}}``; ``X-Mlopen-Signature: sha256=<hex>`` is
the HMAC-SHA256 of those exact bytes with the webhook's secret. A timeout, a connection error or a
5xx (or 429) is tried again later (``tasks.deliver_webhook``, with backoff); out of tries, or on a
refusal (another 4xx, a redirect, an address webhooks may not call), the delivery has failed and
the webhook is marked failing until a later delivery succeeds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from mlopen.notifications import targets
from mlopen.notifications.models import Webhook, WebhookDelivery

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0
SIGNATURE_HEADER = "X-Mlopen-Signature"
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Outcome:
    retry: bool  # try again later (the caller schedules it)
    queue: str  # where that next try goes: the queue of the run's worker


def sign(secret: str, body: bytes) -> str:
    """The X-Mlopen-Signature value for ``body``: what a receiver recomputes to trust a call."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(delivery: WebhookDelivery) -> dict:
    run = delivery.run
    described = None
    if run is not None:
        described = {
            "id": run.pk,
            "kind": run.kind,
            "status": run.status,
            "pipeline": {"id": run.pipeline_id, "name": run.pipeline.name},
            "url": reverse("run-detail", args=[run.pk]),
            "page": reverse("web:run-detail", args=[run.pk]),
            "created_at": run.created_at.isoformat() if run.created_at else None,
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "error": run.error or None,
        }
    return {"event": delivery.event, "delivery": delivery.pk, "run": described}


def _pinned(target: targets.Target) -> tuple[str, dict[str, str], dict]:
    """The URL with the checked address in place of the host name, the Host header and the TLS name:
    the call reaches the address that was checked, whatever the name resolves to by then."""
    parts = urlsplit(target.url)
    address = f"[{target.address}]" if ":" in target.address else target.address
    url = urlunsplit((parts.scheme, f"{address}:{target.port}", parts.path or "/", parts.query, ""))
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return url, {"Host": parts.netloc}, extensions


def _post(target: targets.Target, body: bytes, headers: dict[str, str]) -> httpx.Response:
    url, host_header, extensions = _pinned(target)
    with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False) as client:
        request = client.build_request("POST", url, content=body, headers={**headers, **host_header})
        request.extensions.update(extensions)
        return client.send(request)


def _queue_of(delivery: WebhookDelivery) -> str:
    return (delivery.run.queue if delivery.run is not None else "") or settings.MLOPEN_DEFAULT_QUEUE


def deliver(delivery_id: int, *, last_try: bool) -> Outcome:
    """Call the webhook of this delivery once and record the answer; ``retry`` when worth another try
    (never when ``last_try``: then the delivery has failed)."""
    delivery = WebhookDelivery.objects.select_related("webhook", "run", "run__pipeline").filter(pk=delivery_id).first()
    if delivery is None or delivery.state != WebhookDelivery.State.PENDING or not delivery.webhook.active:
        return Outcome(retry=False, queue="")
    webhook = delivery.webhook
    queue = _queue_of(delivery)
    body = json.dumps(payload(delivery), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "mlopen-webhook",
        "X-Mlopen-Event": delivery.event,
        "X-Mlopen-Delivery": str(delivery.pk),
        SIGNATURE_HEADER: sign(webhook.secret, body),
    }
    status_code = None
    try:
        response = _post(targets.check(webhook.url), body, headers)
    except targets.TargetRefused as exc:
        error, transient = str(exc), exc.transient
    except httpx.TimeoutException:
        error, transient = f"No answer within {TIMEOUT_SECONDS:g} s.", True
    except httpx.HTTPError as exc:
        error, transient = f"Could not connect: {exc.__class__.__name__}: {exc}", True
    else:
        status_code = response.status_code
        if 200 <= status_code < 300:
            error, transient = "", False
        elif status_code >= 500 or status_code == 429:
            error, transient = f"The receiver answered {status_code}.", True
        elif 300 <= status_code < 400:
            error, transient = f"The receiver answered {status_code} (redirects are not followed).", False
        else:
            error, transient = f"The receiver refused the call with {status_code}.", False
    retry = bool(error) and transient and not last_try
    state = (
        WebhookDelivery.State.DELIVERED
        if not error
        else (WebhookDelivery.State.PENDING if retry else WebhookDelivery.State.FAILED)
    )
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        state=state,
        status_code=status_code,
        attempts=delivery.attempts + 1,
        error=error[:MAX_ERROR_CHARS],
        delivered_at=now if state == WebhookDelivery.State.DELIVERED else None,
    )
    if state == WebhookDelivery.State.DELIVERED:
        Webhook.objects.filter(pk=webhook.pk, failing=True).update(failing=False)
    elif state == WebhookDelivery.State.FAILED:
        Webhook.objects.filter(pk=webhook.pk).update(failing=True)
        log.warning("webhook %s: delivery %s failed: %s", webhook.pk, delivery.pk, error)
    return Outcome(retry=retry, queue=queue)
