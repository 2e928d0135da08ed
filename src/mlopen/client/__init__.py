"""The mlopen client: a small Python API over the REST API, and the `mlopen` command built on it.

    from mlopen.client import Client
    client = Client("http://localhost:8000", token="...")

No Django import anywhere in this package: it runs on any machine with httpx (and rich for the CLI).
"""

from mlopen.client.client import (
    ApiError,
    AuthError,
    Client,
    ConfigError,
    Conflict,
    ConnectionFailed,
    MlopenError,
    NotFound,
    PermissionDenied,
    TooManyRequests,
)

__all__ = [
    "ApiError",
    "AuthError",
    "Client",
    "ConfigError",
    "Conflict",
    "ConnectionFailed",
    "MlopenError",
    "NotFound",
    "PermissionDenied",
    "TooManyRequests",
]
