"""What get_params declares is checked before it becomes a form, and values are converted to their type."""

from __future__ import annotations

import pytest

from mlopen.pipelines.params import ParamsInvalid, SpecInvalid, convert, is_required, spec_from_runner


def test_a_default_of_the_declared_type_is_kept_converted():
    spec = spec_from_runner(
        {
            "k": {"type": "integer", "default": "5"},
            "rate": {"type": "float", "default": 1},
            "on": {"type": "bool", "default": "yes"},
        }
    )

    assert spec == [
        {"name": "k", "type": "integer", "default": 5},
        {"name": "rate", "type": "float", "default": 1.0},
        {"name": "on", "type": "bool", "default": True},
    ]


@pytest.mark.parametrize(
    "options, problem",
    [
        ({"type": "integer", "default": "many"}, "its default 'many' is not a valid integer"),
        ({"type": "string", "default": {"__mlopen_file__": {"path": "/etc"}}}, "is not a valid string"),
        ({"type": "choice", "choices": ["a", "b"], "default": "c"}, "is not a valid choice"),
        ({"type": "float", "default": float("nan")}, "is not a valid float"),
        ({"type": "mount"}, "has no known type"),
        ({"type": "choice", "choices": [{"x": 1}]}, "choices must be a list of strings or numbers"),
    ],
)
def test_a_default_or_declaration_that_does_not_fit_its_type_is_refused(options, problem):
    with pytest.raises(SpecInvalid, match=problem):
        spec_from_runner({"p": options})


def test_a_file_parameter_default_is_dropped_and_the_parameter_becomes_optional():
    marker = {"__mlopen_file__": {"path": "/srv/mlopen", "name": "home"}}

    spec = spec_from_runner({"data": {"type": "file", "default": marker}})

    assert spec == [{"name": "data", "type": "file", "blank": True}]
    assert convert(spec, {}) == {"data": None}


def test_a_stored_default_that_is_not_of_its_type_never_reaches_a_run():
    # A spec stored before defaults were checked (or edited in the database).
    spec = [
        {"name": "words", "type": "string", "default": {"__mlopen_file__": {"path": "/etc/shadow"}}},
        {"name": "data", "type": "file", "default": {"__mlopen_file__": {"path": "/etc/shadow"}}},
    ]

    with pytest.raises(ParamsInvalid) as caught:
        convert(spec, {})

    assert caught.value.errors == {"words": "Enter text, not a list or object."}
    # A file parameter's default is never used: not given, it is None.
    assert convert(spec, {"words": "hi"}) == {"words": "hi", "data": None}


def test_a_bare_file_or_upload_parameter_is_optional_and_none_when_not_given():
    # knn_control.py declares "data": ("file") and never reads it; the original left it optional.
    spec = spec_from_runner({"data": {"type": "file"}, "attachment": {"type": "upload"}})

    assert [is_required(field) for field in spec] == [False, False]
    assert convert(spec, {}) == {"data": None, "attachment": None}
    assert convert(spec, {"data": "", "attachment": None}) == {"data": None, "attachment": None}


def test_submitted_values_convert_to_their_types_and_unknown_names_are_refused():
    spec = spec_from_runner({"k": {"type": "integer"}, "name": {"type": "string"}, "data": {"type": "upload"}})

    assert convert(spec, {"k": "3", "name": 7, "data": {"id": "12"}}) == {"k": 3, "name": "7", "data": 12}
    with pytest.raises(ParamsInvalid) as caught:
        convert(spec, {"k": "3.5", "typo": 1, "data": "x"})
    assert caught.value.errors == {
        "typo": "Unknown parameter. Known parameters: data, k, name.",
        "k": "Enter a whole number (got '3.5').",
        "data": "Pick a dataset by its id (got 'x').",
    }
