"""api.serializers.FieldsBuiltOnce: a run serializer's fields are built from the model once, and
each serializer gets fields of its own (bound to it alone), so two requests at once cannot mix."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework import serializers

from mlopen.api.serializers import RunDetailSerializer, RunSerializer, _own_copy
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


def test_the_copies_give_what_freshly_built_fields_give(runs):
    class Fresh(RunDetailSerializer):
        def get_fields(self):  # DRF's own: fields built again for every instance
            return serializers.ModelSerializer.get_fields(self)

    for run in runs:
        kept = RunDetailSerializer(run).data
        assert kept["name"] == run.name and kept["kind"] == run.kind
        assert kept == Fresh(run).data


def test_a_field_that_holds_fields_is_copied_with_them_and_a_plain_one_alone():
    # The run serializers hold no such field today; one added later must not share its children.
    listed = serializers.ListField(child=serializers.CharField())
    copied = _own_copy(listed)
    assert copied is not listed and copied.child is not listed.child and copied.child.parent is copied
    nested = RunSerializer(many=True, read_only=True)
    copied_nested = _own_copy(nested)
    assert copied_nested is not nested and copied_nested.child is not nested.child
    assert copied_nested.child.parent is copied_nested
    plain = serializers.CharField(read_only=True)
    shallow = _own_copy(plain)
    assert shallow is not plain
    shallow.bind("name", RunSerializer())
    assert shallow.field_name == "name" and plain.field_name is None and plain.parent is None
