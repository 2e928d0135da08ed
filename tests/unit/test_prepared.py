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


# --- Compiled: model instances from a statement compiled once ---

_RUN_STAND_IN = -2_000_000_123


def _run_with_related(run_id):
    from mlopen.runs.models import Run

    return (
        Run.objects.select_related("pipeline", "version", "owner", "input")
        .defer("pipeline__description")
        .filter(pk=run_id)
        .order_by()[:1]
    )


@pytest.fixture
def two_runs(db):
    from mlopen.pipelines.models import Pipeline, PipelineVersion
    from mlopen.runs.models import Run

    owner = get_user_model().objects.create_user("ada", password="x")
    pipeline = Pipeline.objects.create(name="iris", description="flowers")
    version = PipelineVersion.objects.create(pipeline=pipeline, number=1, control_filename="iris.py", folder="p/1")
    made = []
    for params, status in (({"k": [1, 2]}, Run.Status.SUCCEEDED), ({}, Run.Status.QUEUED)):
        made.append(
            Run.objects.create(
                pipeline=pipeline, version=version, owner=owner, kind=Run.Kind.RUN, params=params, status=status
            )
        )
    return made


def test_compiled_gives_the_instances_the_orm_gives_related_ones_included(two_runs, django_assert_num_queries):
    statement = prepared.Compiled(_run_with_related, run_id=_RUN_STAND_IN)
    for run in two_runs:
        expected = _run_with_related(run.pk)[0]
        with django_assert_num_queries(1):
            found = statement.first(run_id=run.pk)
            # Related rows came with it: no query for them, as with select_related.
            pipeline, version, owner, dataset = found.pipeline, found.version, found.owner, found.input
        assert [(f.attname, getattr(found, f.attname)) for f in found._meta.concrete_fields] == [
            (f.attname, getattr(expected, f.attname)) for f in expected._meta.concrete_fields
        ]
        # Converted as the ORM converts: JSON into objects, datetimes aware.
        assert isinstance(found.params, dict) and found.params == run.params
        assert found.created_at == run.created_at and found.created_at.tzinfo is not None
        assert (pipeline.name, version.number, owner.username, dataset) == ("iris", 1, "ada", None)
        assert found.get_deferred_fields() == set() and pipeline.get_deferred_fields() == {"description"}
        assert not found._state.adding and found._state.db == "default"
    assert statement.first(run_id=10**9) is None


def test_compiled_refuses_what_it_cannot_populate(db):
    from mlopen.runs.models import Run

    values = prepared.Compiled(lambda run_id: Run.objects.filter(pk=run_id).values_list("pk"), run_id=_RUN_STAND_IN)
    with pytest.raises(ValueError, match="plain model queryset"):
        values.first(run_id=1)
    missing = prepared.Compiled(lambda run_id: Run.objects.filter(pk__gt=0), run_id=_RUN_STAND_IN)
    with pytest.raises(ValueError, match="'run_id'"):
        missing.first(run_id=1)


def test_compiled_rows_answer_as_the_orm_does(db):
    for name in ("ada", "grace"):
        get_user_model().objects.create_user(name, password="x")
    statement = prepared.CompiledRows(_users, name="\x00stand-in\x00", above=-2_000_000_123)
    assert statement.rows(name="ada", above=0) == list(_users("ada", 0))
    assert statement.first_value(name="grace", above=0) == "grace"
    assert statement.statement() is statement.statement()  # compiled once
