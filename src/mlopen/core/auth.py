"""Login throttling with django-axes, for logins that come from a web request."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend


class ThrottledLoginBackend(AxesStandaloneBackend):
    """Throttles failed logins per username and address (django-axes).

    Authentication without a request (management commands, Django's test client login) cannot be
    attributed to an address; axes would refuse it outright, so it is left to the next backend.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
