"""The one parser of whole numbers from requests."""

from __future__ import annotations

import pytest

from mlopen.core.numbers import MAX_INT, parse_id, parse_int


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0),
        ("42", 42),
        (" 7 ", 7),
        (str(MAX_INT), MAX_INT),
        (str(MAX_INT + 1), None),
        ("9" * 20, None),
        ("²", None),
        ("٣", None),
        ("-1", None),
        ("+1", None),
        ("1e3", None),
        ("0x10", None),
        ("1_000", None),
        ("", None),
        (None, None),
        (["1"], None),
    ],
)
def test_parse_int_takes_ascii_digits_within_the_databases_range(raw, expected):
    assert parse_int(raw) == expected


def test_parse_int_honours_its_bounds():
    assert parse_int("5", minimum=1, maximum=4) is None
    assert parse_int("4", minimum=1, maximum=4) == 4


def test_an_id_is_one_or_more():
    assert parse_id("0") is None and parse_id("1") == 1
