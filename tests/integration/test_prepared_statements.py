"""PostgreSQL plans mlopen's repeated statements once per connection (MLOPEN_DATABASE_PREPARED)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's here")


def prepared_on_this_connection() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db
def test_a_statement_run_again_and_again_is_prepared_with_its_values_bound_apart():
    user = get_user_model().objects.create_user("ada", password="x")
    for _ in range(6):
        assert get_user_model().objects.get(pk=user.pk).username == "ada"

    statements = [text for text in prepared_on_this_connection() if '"auth_user"' in text and "SELECT" in text]
    assert statements, prepared_on_this_connection()
    assert "$1" in statements[0]  # the value is a parameter, not part of the SQL text
