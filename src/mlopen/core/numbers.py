"""Whole numbers from requests: ids, pages, offsets. One parser, used by pages and API alike.

``str.isdigit()`` is true for ``²`` and ``٣`` (which ``int()`` then refuses or reads), and a 20-digit
id overflows the database's 64-bit integers (SQLite raises, PostgreSQL errors): each was a 500. Here
only ASCII digits count, and a number out of range is no number.
"""

from __future__ import annotations

import re

from django.urls.converters import IntConverter

# The databases' integer columns (and ids) are signed 64-bit.
MAX_INT = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


def parse_int(raw, minimum: int = 0, maximum: int = MAX_INT) -> int | None:
    """``raw`` (a query value, a form field) as an int within [minimum, maximum]; None if it is not one.

    Surrounding spaces are allowed; signs, other digits, decimals and exponents are not.
    """
    if not isinstance(raw, str):
        return None
    text = raw.strip(" ")
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None


def parse_id(raw) -> int | None:
    """An object id (1 or more), or None."""
    return parse_int(raw, minimum=1)


class IdConverter(IntConverter):
    """``<id:pk>`` in URL patterns: Django's ``<int:>`` bounded to what a database id can be, so a
    longer number is a 404 rather than an overflow in the query."""

    regex = "[0-9]{1,18}"
