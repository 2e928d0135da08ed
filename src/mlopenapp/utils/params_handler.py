"""Legacy `params_handler`: the original built Django forms from get_params; without Django these
give the form's description as data, the way mlopen reads it ({"type": ..., "default"...})."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from mlopen_runner.child import normalize_param_spec


def field_params(type: str, params: Mapping[str, Any] | None) -> dict[str, Any] | None:  # noqa: A002 - the original's name
    """One field: its type and options, or None for a malformed one (the original skipped those)."""
    try:
        return normalize_param_spec({"field": (type, dict(params or {}))})["field"]
    except (TypeError, ValueError) as exc:
        print(f"mlopen: {exc}", file=sys.stderr)
        return None


def get_params_form(params: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every field of a get_params result that describes one; malformed entries are printed and
    left out, as the original did."""
    form = {}
    for name, entry in (params or {}).items():
        try:
            form.update(normalize_param_spec({name: entry}))
        except (TypeError, ValueError) as exc:
            print(f"mlopen: {exc}", file=sys.stderr)
    return form
