"""API authentication: ``Authorization: Token <token>``, checked against the hashed tokens (mlopen.core.tokens)."""

from __future__ import annotations

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from mlopen.core import tokens


class HashedTokenAuthentication(TokenAuthentication):
    """DRF's header parsing; the token is looked up by its digest. A revoked or expired token is a
    401 that says which (``request.auth`` is the ApiToken row)."""

    def authenticate_credentials(self, key):
        try:
            token = tokens.authenticate(key)
        except tokens.TokenRefused as exc:
            raise AuthenticationFailed(str(exc)) from None
        return token.user, token
