"""Legacy `data_handler`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def list_to_js_obj(lst: Iterable[Any]) -> list[dict[str, Any]]:
    """`[{"name": item}, ...]`, the shape the original's pages listed things in."""
    return [{"name": item} for item in lst]
