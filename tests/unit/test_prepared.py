"""mlopen.core.prepared: a queryset compiled once, run again with other values in the stand-ins' places."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from mlopen.core import prepared

pytestmark = pytest.mark.django_db


def _users(name, above):
    return get_user_model().objects.filter(username=name, pk__gt=above).order_by("pk").values_list("username")


def test_a_prepared_query_answers_as_the_orm_does_for_other_values():
    for name in ("ada", "adam", "grace"):
        get_user_model().objects.create_user(name, password="x")
    statement = prepared.prepare(_users, name="\x00stand-in\x00", above=-2_000_000_123)

    for name, above in (("ada", 0), ("adam", 0), ("grace", 0), ("zed", 0), ("ada", 10**6)):
        assert statement.rows(name=name, above=above) == list(_users(name, above))
    assert statement.first_value(name="grace", above=0) == "grace"
    assert statement.first_value(name="nobody", above=0) is None


def test_a_value_the_orm_rewrites_cannot_be_a_stand_in():
    """startswith sends "name%" to the database: the stand-in is not among the parameters, so it is
    refused at once rather than bound in the wrong form later."""
    with pytest.raises(ValueError, match="'name'"):
        prepared.prepare(lambda name: get_user_model().objects.filter(username__startswith=name), name="x")


def test_a_stand_in_the_query_does_not_hold_is_refused():
    with pytest.raises(ValueError, match="'above'"):
        prepared.prepare(lambda name, above: get_user_model().objects.filter(username=name), name="x", above=-1)
