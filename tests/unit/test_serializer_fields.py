"""api.serializers.FieldsBuiltOnce: a run serializer's fields are built from the model once, and
each serializer gets fields of its own (bound to it alone), so two requests at once cannot mix."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework import serializers

from mlopen.api.serializers import RunDetailSerializer, RunSerializer
from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(db):
    owner = get_user_model().objects.create_user("ann", password="x")
    pipeline = Pipeline.objects.create(name="iris", description="")
    version = PipelineVersion.objects.create(pipeline=pipeline, number=1, control_filename="iris.py", folder="p/1")
    make = Run.objects.create
    return (
        make(pipeline=pipeline, version=version, kind="run", owner=owner, name="first", params={"k": 3}),
        make(pipeline=pipeline, version=version, kind="train", owner=owner, name="second", warnings=["w"]),
    )


@pytest.mark.parametrize("serializer_class", [RunSerializer, RunDetailSerializer])
def test_each_serializer_has_fields_of_its_own_bound_to_it(runs, serializer_class):
    first, second = serializer_class(runs[0]), serializer_class(runs[1])
    first_fields, second_fields = first.fields, second.fields
    assert set(first_fields) == set(second_fields)
    for name in first_fields:
        assert first_fields[name] is not second_fields[name], name
        assert first_fields[name].parent is first and second_fields[name].parent is second, name
        assert first_fields[name].field_name == name == second_fields[name].field_name
    # The kept fields themselves stay unbound: nothing of a request reaches the next one.
    for name, kept in serializer_class._fields_built_once.items():
        assert getattr(kept, "parent", None) is None, name
    # A field that holds fields (a list of text, say) has its child bound to its own copy.
    holders = [f for f in first_fields.values() if isinstance(f, (serializers.ListField, serializers.DictField))]
    for holder in holders:
        assert holder.child.parent is holder


def test_the_copies_give_what_freshly_built_fields_give(runs):
    class Fresh(RunDetailSerializer):
        def get_fields(self):  # DRF's own: fields built again for every instance
            return serializers.ModelSerializer.get_fields(self)

    for run in runs:
        kept = RunDetailSerializer(run).data
        assert kept["name"] == run.name and kept["kind"] == run.kind
        assert kept == Fresh(run).data
