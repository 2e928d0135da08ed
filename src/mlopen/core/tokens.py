"""API tokens: created, listed, rotated and revoked by their owner; kept at rest as a digest only.

A token is ``mlo_`` and 40 random URL-safe characters (240 bits). The database keeps its SHA-256
digest (the lookup key) and its first 12 characters (so its owner can tell tokens apart). A fast hash
is right here, unlike for passwords: a token is random and long, so nothing can be guessed from its
digest, and each API request checks one, which a password hasher's deliberate ~0.3 s would make
every request pay. Tokens that predate hashing (DRF's 40-hex-digit keys) were imported the same way
by the migration ``core.0002_import_plain_tokens`` and keep working.

A revoked or expired token stays in the table, so a request with it is told which it is.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from mlopen.core import prepared
from mlopen.core.models import ApiToken

TOKEN_PREFIX = "mlo_"
SHOWN_PREFIX_LENGTH = 12
# Longest token name, and how many live tokens one user may hold (each a way in; a script that
# makes one per call should reuse one instead).
MAX_NAME_LENGTH = 100
MAX_ACTIVE_TOKENS = 50
MAX_LIFETIME_DAYS = 3650
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenRefused(Exception):
    """The token cannot authenticate; the message says why (unknown, revoked, expired)."""


class TokenRequestInvalid(ValueError):
    """A token cannot be created as asked; ``field`` names what was wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def digest_of(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _new_raw_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(30)


def _clean_name(name) -> str:
    name = (name if isinstance(name, str) else "").strip()
    if not name:
        raise TokenRequestInvalid("name", "Give the token a name (what or where it is used).")
    if len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise TokenRequestInvalid("name", f"A token name is printable text of at most {MAX_NAME_LENGTH} characters.")
    return name


def expiry_in(days: int | None):
    """The expiry of a token that lives ``days`` days from now (None: never expires)."""
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_LIFETIME_DAYS:
        raise TokenRequestInvalid("expires_in_days", f"expires_in_days must be 1 to {MAX_LIFETIME_DAYS}, or empty.")
    return timezone.now() + timedelta(days=days)


def create_token(user, name, expires_at=None) -> tuple[ApiToken, str]:
    """A new token for ``user``: the row, and the token itself (shown once, never stored)."""
    name = _clean_name(name)
    if expires_at is not None and expires_at <= timezone.now():
        raise TokenRequestInvalid("expires_at", "The expiry must lie in the future.")
    with transaction.atomic():
        if active_tokens(user).count() >= MAX_ACTIVE_TOKENS:
            raise TokenRequestInvalid(
                "name", f"You have {MAX_ACTIVE_TOKENS} active tokens, the limit; revoke one you no longer use."
            )
        raw = _new_raw_token()
        token = ApiToken.objects.create(
            user=user, name=name, prefix=raw[:SHOWN_PREFIX_LENGTH], digest=digest_of(raw), expires_at=expires_at
        )
    return token, raw


def tokens_of(user):
    return ApiToken.objects.filter(user=user)


def active_tokens(user):
    now = timezone.now()
    return tokens_of(user).filter(revoked_at__isnull=True).exclude(expires_at__lte=now)


# Every API request asks: compiled once (mlopen.core.prepared).
_TOKEN_BY_DIGEST = prepared.Compiled(
    lambda digest: ApiToken.objects.select_related("user").filter(digest=digest).order_by()[:1],
    digest="\x00mlopen-digest-stand-in\x00",
)


def authenticate(raw: str) -> ApiToken:
    """The live token ``raw`` is, or TokenRefused saying why not."""
    token = _TOKEN_BY_DIGEST.first(digest=digest_of(raw))
    if token is None:
        raise TokenRefused("Invalid token.")
    if token.revoked_at is not None:
        reason = f" ({token.revoked_reason})" if token.revoked_reason else ""
        raise TokenRefused(f"This token was revoked{reason}; create a new one on your account page.")
    if token.expired:
        raise TokenRefused(
            f"This token expired on {token.expires_at:%Y-%m-%d %H:%M} UTC; create a new one on your account page."
        )
    if not token.user.is_active:
        raise TokenRefused("User inactive or deleted.")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def revoke(token: ApiToken, reason: str = "revoked by its owner") -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason[:100]
    )
    token.refresh_from_db(fields=["revoked_at", "revoked_reason"])


def revoke_all(user, reason: str) -> int:
    """Revoke every live token of ``user`` (a password change); how many were."""
    return (
        tokens_of(user).filter(revoked_at__isnull=True).update(revoked_at=timezone.now(), revoked_reason=reason[:100])
    )


def rotate(token: ApiToken) -> tuple[ApiToken, str]:
    """Replace ``token`` with a new one of the same name and lifetime; the old one stops working now."""
    if not token.active:
        raise TokenRequestInvalid("token", f"This token is {token.state}; only an active token can be rotated.")
    expires_at = None
    if token.expires_at is not None:
        expires_at = timezone.now() + (token.expires_at - token.created_at)
    with transaction.atomic():
        revoke(token, "rotated")
        return create_token(token.user, token.name, expires_at=expires_at)


def install_token(user, raw: str, name: str) -> ApiToken:
    """Make ``raw`` (a token chosen by an administrator, MLOPEN_ADMIN_TOKEN) a live token of ``user``
    named ``name``; an earlier token of that name is revoked, the user's other tokens are left alone."""
    digest = digest_of(raw)
    with transaction.atomic():
        existing = ApiToken.objects.filter(digest=digest).first()
        if existing is not None and existing.user_id == user.pk and existing.active:
            return existing
        if existing is not None:
            existing.delete()  # it belonged to someone else or was revoked: the configured value wins
        tokens_of(user).filter(name=name, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_reason=f"replaced by a new {name}"
        )
        return ApiToken.objects.create(user=user, name=name, prefix=raw[:SHOWN_PREFIX_LENGTH], digest=digest)
