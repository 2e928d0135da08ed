"""The client's address and the forwarded headers, behind proxies configured or not."""

from __future__ import annotations

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from mlopen.core.clients import ForwardedHeadersMiddleware, client_address


def _request(remote="10.0.0.2", **headers):
    return RequestFactory().get("/", REMOTE_ADDR=remote, **headers)


@pytest.mark.parametrize(
    ("count", "forwarded", "expected"),
    [
        (0, "1.2.3.4", "10.0.0.2"),
        (1, "1.2.3.4", "1.2.3.4"),
        (1, "6.6.6.6, 1.2.3.4", "1.2.3.4"),
        (2, "6.6.6.6, 1.2.3.4, 10.0.0.7", "1.2.3.4"),
        (1, "", "10.0.0.2"),
        (1, "not an address", "10.0.0.2"),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_address_takes_the_hop_the_configured_proxies_vouch_for(settings, count, forwarded, expected):
    settings.MLOPEN_PROXY_COUNT = count
    settings.MLOPEN_TRUSTED_PROXIES = []
    assert client_address(_request(HTTP_X_FORWARDED_FOR=forwarded)) == expected


def test_forwarded_proto_from_a_client_that_is_not_a_proxy_is_dropped(settings):
    settings.MLOPEN_PROXY_COUNT = 1
    settings.MLOPEN_TRUSTED_PROXIES = ["10.0.0.1"]
    seen = {}

    def view(request):
        seen.update(request.META)
        return HttpResponse()

    ForwardedHeadersMiddleware(view)(_request(remote="8.8.8.8", HTTP_X_FORWARDED_PROTO="https"))
    assert "HTTP_X_FORWARDED_PROTO" not in seen
    ForwardedHeadersMiddleware(view)(_request(remote="10.0.0.1", HTTP_X_FORWARDED_PROTO="https"))
    assert seen["HTTP_X_FORWARDED_PROTO"] == "https"


def test_without_proxies_no_forwarded_header_reaches_a_view(settings):
    settings.MLOPEN_PROXY_COUNT = 0
    settings.MLOPEN_TRUSTED_PROXIES = []
    seen = {}

    def view(request):
        seen.update(request.META)
        return HttpResponse()

    ForwardedHeadersMiddleware(view)(
        _request(HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="evil.example", HTTP_X_FORWARDED_FOR="1.1.1.1")
    )
    assert not {"HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_FOR"} & set(seen)
