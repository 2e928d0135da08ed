"""Pipeline parameters: the form described by a control file's get_params, and the values users send.

A parameter spec is stored as a list (JSON objects lose key order in PostgreSQL's jsonb) of
``{"name", "type", "default"?, "blank"?, "choices"?}``. The runner reports specs as an ordered
dict; :func:`spec_from_runner` turns that into the stored list.
"""

from __future__ import annotations

import math
from typing import Any

TYPES = ("string", "integer", "float", "bool", "choice", "file", "upload")
FILE_TYPES = ("file", "upload")
_TRUE = {"true", "1", "on", "yes", "y", "t"}
_FALSE = {"false", "0", "off", "no", "n", "f", ""}


class ParamsInvalid(ValueError):
    """One or more parameter values did not convert. ``errors`` maps parameter name to message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{name}: {msg}" for name, msg in errors.items()))
        self.errors = errors


class SpecInvalid(ValueError):
    """What get_params declared cannot be a form: the message names the parameter and what to fix."""


def spec_from_runner(runner_spec: dict | None) -> list[dict]:
    """The stored spec of what a control file's get_params declared, every default checked.

    Everything here came out of pipeline code, so it is data to check, not to trust: a default must
    be a value of its parameter's type (a default that does not convert refuses the upload), and a
    file parameter's default is dropped (the parameter becomes optional): files reach a run only as
    datasets its user picked, never from a value the pipeline supplied.
    """
    if not isinstance(runner_spec, dict):
        runner_spec = {}
    fields = []
    for name, options in runner_spec.items():
        if not isinstance(options, dict) or options.get("type") not in TYPES:
            raise SpecInvalid(f"parameter {str(name)[:100]!r} has no known type; known types: {', '.join(TYPES)}.")
        field = {"name": str(name)[:200], "type": options["type"]}
        if "choices" in options:
            choices = options["choices"]
            if not isinstance(choices, list) or not all(_is_choice(choice) for choice in choices):
                raise SpecInvalid(f"parameter {field['name']!r}: choices must be a list of strings or numbers.")
            field["choices"] = [str(choice) for choice in choices]
        if "blank" in options:
            field["blank"] = bool(options["blank"])
        if "default" in options:
            if field["type"] in FILE_TYPES:
                field["blank"] = True
            else:
                field["default"] = _checked_default(field, options["default"])
        fields.append(field)
    return fields


def _is_choice(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _checked_default(field: dict, default: Any) -> Any:
    if default is None:
        return None
    try:
        return convert_value({k: v for k, v in field.items() if k != "default"}, default)
    except ValueError as exc:
        raise SpecInvalid(
            f"parameter {field['name']!r}: its default {str(default)[:60]!r} is not a valid {field['type']}: {exc}"
        ) from None


def spec_as_dict(spec: list[dict]) -> dict[str, dict]:
    """The API's view of a spec: parameter name → its options, in form order."""
    return {field["name"]: {k: v for k, v in field.items() if k != "name"} for field in spec}


def is_required(field: dict) -> bool:
    # File parameters are optional, as in the original (knn_control.py declares "data": ("file")
    # and never reads it): one not given reaches the pipeline as None.
    if field["type"] in ("string", "bool", *FILE_TYPES):
        return False
    return "default" not in field and not field.get("blank", False)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def convert_value(field: dict, value: Any) -> Any:
    """Convert one submitted value to the parameter's Python type, or raise ValueError (the message is shown)."""
    kind = field["type"]
    if _missing(value):
        if "default" in field and kind not in FILE_TYPES:
            # Checked at upload too; converted again here so a spec stored before that check, or
            # changed in the database, still gives the pipeline only a value of its type.
            default = field["default"]
            return (
                None if default is None else convert_value({k: v for k, v in field.items() if k != "default"}, default)
            )
        if kind == "string":
            return ""
        if kind == "bool":
            return False
        if field.get("blank") or kind in FILE_TYPES:
            return None
        raise ValueError("This parameter is required.")
    if kind == "string":
        if isinstance(value, (dict, list)):
            raise ValueError("Enter text, not a list or object.")
        return str(value)
    if kind == "integer":
        return _to_int(value)
    if kind == "float":
        return _to_float(value)
    if kind == "bool":
        return _to_bool(value)
    if kind == "choice":
        choices = [str(c) for c in field.get("choices", [])]
        if str(value) not in choices:
            raise ValueError(f"Choose one of: {', '.join(choices)}.")
        return str(value)
    if kind in FILE_TYPES:
        return _to_dataset_id(value)
    raise ValueError(f"Unknown parameter type {kind!r}.")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("Enter a whole number, not true/false.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        text = str(value).strip()
        return int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            raise ValueError(f"Enter a whole number (got {str(value)[:40]!r}).") from None
        if as_float.is_integer():
            return int(as_float)
        raise ValueError(f"Enter a whole number (got {str(value)[:40]!r}).") from None


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("Enter a number, not true/false.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Enter a number (got {str(value)[:40]!r}).") from None
    if not math.isfinite(number):
        raise ValueError("Enter a finite number.")
    return number


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"Enter true or false (got {str(value)[:40]!r}).")


def _to_dataset_id(value: Any) -> int:
    if isinstance(value, dict) and "id" in value:
        value = value["id"]
    if isinstance(value, bool):
        raise ValueError("Pick a dataset by its id.")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"Pick a dataset by its id (got {str(value)[:40]!r}).") from None


def convert(spec: list[dict], submitted: dict | None) -> dict[str, Any]:
    """Convert every parameter of ``spec`` from ``submitted``; raise ParamsInvalid with all errors at once.

    File parameters come back as dataset ids; the caller checks the user may read them.
    Unknown names are refused, so a typo in a parameter name is not silently ignored.
    """
    submitted = submitted or {}
    if not isinstance(submitted, dict):
        raise ParamsInvalid({"params": "Send params as an object mapping parameter names to values."})
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    known = {field["name"] for field in spec}
    for name in submitted:
        if name not in known:
            hint = f" Known parameters: {', '.join(sorted(known))}." if known else " This pipeline takes no parameters."
            errors[str(name)] = f"Unknown parameter.{hint}"
    for field in spec:
        try:
            values[field["name"]] = convert_value(field, submitted.get(field["name"]))
        except ValueError as exc:
            errors[field["name"]] = str(exc)
    if errors:
        raise ParamsInvalid(errors)
    return values


def file_param_names(spec: list[dict]) -> list[str]:
    return [field["name"] for field in spec if field["type"] in FILE_TYPES]
