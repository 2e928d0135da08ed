"""mlopen.core.access_log: one line per request, with the client address the throttles count by, the
user, the status, the size and the time; secrets in query strings and forged line breaks stay out."""

from __future__ import annotations

import logging
import re

import pytest
from django.test import Client

from mlopen.config import access_log_handler, access_log_level

pytestmark = pytest.mark.django_db

LINE = re.compile(r'^(\S+) (\S+) "(\S+) (\S+) HTTP/1\.1" (\d{3}) (\S+) \d+\.\dms$')


@pytest.fixture
def access(caplog):
    caplog.set_level(logging.INFO, logger="mlopen.access")

    def lines() -> list[tuple]:
        found = []
        for record in caplog.records:
            if record.name == "mlopen.access":
                message = record.getMessage()
                assert "\n" not in message
                match = LINE.match(message)
                assert match, message
                found.append(match.groups())
        return found

    return lines


def test_a_page_and_an_api_call_are_logged_with_who_asked(access, api, author):
    browser = Client()
    browser.force_login(author)
    assert browser.get("/pipelines/").status_code == 200
    assert api.get("/api/v1/runs/").status_code == 200
    assert Client().get("/api/v1/runs/").status_code == 401

    page, listed, refused = access()
    assert page[:5] == ("127.0.0.1", "ada", "GET", "/pipelines/", "200")
    assert listed[:5] == ("127.0.0.1", "root", "GET", "/api/v1/runs/", "200")
    assert int(listed[5]) > 0  # Content-Length
    assert refused[:5] == ("127.0.0.1", "-", "GET", "/api/v1/runs/", "401")


def test_a_client_cannot_choose_its_logged_address_without_a_proxy_configured(access):
    Client(REMOTE_ADDR="10.1.2.3").get("/healthz", HTTP_X_FORWARDED_FOR="6.6.6.6")
    ((address, *_rest),) = access()
    assert address == "10.1.2.3"


def test_secret_looking_query_values_and_encoded_line_breaks_stay_out_of_the_log(access):
    Client().get("/healthz", {"token": "s3cret-value", "page": "2"})
    Client().get("/accounts/login/%0A127.0.0.1 - forged")
    (health, forged) = access()
    assert health[3] == "/healthz?token=***&page=2"
    assert "s3cret" not in health[3]
    assert forged[3] == "/accounts/login/%0A127.0.0.1%20-%20forged" and forged[4] == "404"


def test_off_writes_no_line(caplog):
    assert access_log_level("off") == "WARNING" and access_log_level("OFF") == "WARNING"
    assert access_log_level("-") == "INFO" and access_log_level("/var/log/mlopen/access.log") == "INFO"
    caplog.set_level(access_log_level("off"), logger="mlopen.access")
    assert Client().get("/healthz").status_code == 200
    assert [record for record in caplog.records if record.name == "mlopen.access"] == []


def test_the_log_goes_to_the_console_or_to_a_file_under_mlopen_home(settings, tmp_path):
    assert access_log_handler("-")["class"] == "logging.StreamHandler"
    assert access_log_handler("off")["class"] == "logging.StreamHandler"
    absolute = access_log_handler(str(tmp_path / "access.log"))
    assert absolute == {
        "class": "logging.handlers.WatchedFileHandler",
        "formatter": "access",
        "filename": str(tmp_path / "access.log"),
        "delay": True,  # workers load the same settings: no file until a line is written
    }
    assert access_log_handler("logs/access.log")["filename"] == str(settings.MLOPEN_HOME / "logs" / "access.log")
