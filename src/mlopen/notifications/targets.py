"""Where a webhook may point: http(s), at most 2 KB, and (unless MLOPEN_WEBHOOK_ALLOW_PRIVATE) never
at this host, its network or the cloud's metadata service.

Every address the host name resolves to is checked, when the webhook is created and again at
each delivery; the delivery then connects to the address it checked (``Target.address``), so a
name that resolves elsewhere between the check and the call (DNS rebinding) reaches nothing else.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from mlopen.notifications.models import MAX_URL_LENGTH

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """A URL a webhook may not call; the message says why. ``transient`` when it may pass later (a
    host name that does not resolve now)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    address: str  # the checked address the call connects to


def _forbidden(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
        or not address.is_global
    )


def _parse(url: str) -> tuple[str, str, int]:
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"Not a valid URL: {exc}.") from exc
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("A webhook URL must start with http:// or https://.")
    if not parts.hostname:
        raise TargetRefused("The URL names no host.")
    if parts.username or parts.password:
        raise TargetRefused("The URL may not carry a user name or password; the signature authenticates the call.")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"The host {host[:200]!r} does not resolve.", transient=True) from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def check(url: str) -> Target:
    """The target ``url`` names, or :class:`TargetRefused` with the reason."""
    scheme, host, port = _parse(url)
    addresses = _addresses(host, port)
    if not addresses:
        raise TargetRefused(f"The host {host[:200]!r} does not resolve.")
    if not settings.MLOPEN_WEBHOOK_ALLOW_PRIVATE:
        refused = [address for address in addresses if _forbidden(address)]
        if refused:
            raise TargetRefused(
                f"The host {host[:200]!r} resolves to {refused[0]}, a loopback, link-local, private or reserved "
                "address; webhooks may not call those (an administrator may allow them with "
                "MLOPEN_WEBHOOK_ALLOW_PRIVATE=true)."
            )
    return Target(url=url, scheme=scheme, host=host, port=port, address=str(addresses[0]))
