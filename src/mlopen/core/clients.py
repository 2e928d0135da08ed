"""Who is on the other end of a request: the client's address, behind the configured proxies only.

Everything that needs the client's address (login lockouts through django-axes, throttles, logs)
asks ``client_address(request)``; nothing else reads ``X-Forwarded-For``.

- No proxy configured (the default): the address is the socket's peer, ``REMOTE_ADDR``, and the
  ``X-Forwarded-*`` headers are dropped before any view sees them (``ForwardedHeadersMiddleware``).
- ``MLOPEN_PROXY_COUNT=N``: N proxies stand in front and each appends the address it received the
  request from to ``X-Forwarded-For``; the client is the N-th address from the right of
  ``X-Forwarded-For + [REMOTE_ADDR]`` (python-ipware picks it). Addresses a client wrote to the left
  of that are ignored, so it cannot choose the address it is locked out under.
- ``MLOPEN_TRUSTED_PROXIES=10.0.0.5,10.1.0.0/16``: additionally, only a peer in that list may set
  the headers. From any other peer they are dropped. With a count alone, Django cannot tell the
  proxy from a client that reached the app directly: bind the app where only the proxy reaches it.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from python_ipware import IpWare

FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_FORWARDED")


def proxy_count() -> int:
    """How many proxies stand in front: MLOPEN_PROXY_COUNT, or 1 when only trusted addresses are named."""
    count = getattr(settings, "MLOPEN_PROXY_COUNT", 0)
    if not count and getattr(settings, "MLOPEN_TRUSTED_PROXIES", None):
        return 1
    return count


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


@lru_cache(maxsize=8)
def _resolver(count: int) -> IpWare:
    # Only X-Forwarded-For: python-ipware's default list includes headers (X-Real-IP, CF-Connecting-IP,
    # ...) our proxies do not set, which a client could then set for us.
    return IpWare(precedence=("HTTP_X_FORWARDED_FOR",), proxy_count=count)


def peer_is_trusted_proxy(request) -> bool:
    """True when the headers of this request may be believed: proxies are configured and, if their
    addresses are named, the peer is one of them."""
    if proxy_count() == 0:
        return False
    trusted = tuple(getattr(settings, "MLOPEN_TRUSTED_PROXIES", ()) or ())
    if not trusted:
        return True  # a count alone: the deployment keeps everyone but the proxy away (see above)
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(peer in network for network in _networks(trusted))


def client_address(request) -> str:
    """The client's IP address as text (``REMOTE_ADDR`` unless a configured proxy says otherwise)."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    if not peer_is_trusted_proxy(request):
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if not isinstance(forwarded, str) or not forwarded.strip():
        return remote  # the proxy sent nothing: a request it made itself (a health check)
    # The last proxy's own hop is REMOTE_ADDR; python-ipware counts proxies inside the chain.
    chain = f"{forwarded}, {remote}" if remote else forwarded
    ip, _ = _resolver(proxy_count()).get_client_ip({"HTTP_X_FORWARDED_FOR": chain})
    return str(ip) if ip is not None else remote


class ForwardedHeadersMiddleware:
    """First in MIDDLEWARE: drops ``X-Forwarded-*`` and ``Forwarded`` unless a configured proxy sent them,
    so Django's ``SECURE_PROXY_SSL_HEADER`` and ``USE_X_FORWARDED_HOST`` (set only when proxies are
    configured) never believe a client."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not peer_is_trusted_proxy(request):
            for header in FORWARDED_HEADERS:
                request.META.pop(header, None)
        return self.get_response(request)
