"""Login attempts are throttled: repeated wrong passwords lock the username for that address."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_repeated_wrong_passwords_lock_the_login_even_with_the_right_one(client, user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
        assert response.status_code in (200, 429)
    locked = client.post("/accounts/login/", {"username": "alice", "password": "alice-password-1"})
    assert locked.status_code == 429
    assert b"Too many failed login attempts" in locked.content


def test_a_correct_password_logs_in_and_resets_the_count(client, user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-password-1"})
    assert response.status_code == 302
