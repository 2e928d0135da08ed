"""How deeply a parsed JSON value nests, measured without recursion.

Request bodies and stored results are parsed JSON from users and pipelines; code that walks them
recursively (serializers, renderers, templates) must never meet one deeper than it can walk.
"""

from __future__ import annotations

MAX_JSON_DEPTH = 100


def too_deep(value, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``value`` has lists or dicts nested more than ``limit`` levels (a scalar is level 0)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return False
