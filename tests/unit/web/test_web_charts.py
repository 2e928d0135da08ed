"""The y-axis of a run's metric charts: the data's range, padded, and kept inside [0, 1] for fractions."""

import math

import pytest

from mlopen.web.charts import value_range


def test_accuracy_near_one_gets_a_tight_axis_that_stops_at_one():
    assert value_range([0.97, 0.98, 0.99, 1.0]) == pytest.approx([0.967, 1.0])


def test_a_fraction_near_zero_stops_at_zero():
    assert value_range([0.0, 0.1, 0.2]) == pytest.approx([0.0, 0.22])


def test_values_beyond_one_are_padded_on_both_sides():
    assert value_range([0.5, 2.5]) == pytest.approx([0.3, 2.7])
    assert value_range([-3.0, 1.0]) == pytest.approx([-3.4, 1.4])


def test_a_flat_series_gets_room_around_it():
    assert value_range([1.0, 1.0]) == pytest.approx([0.95, 1.0])  # a constant accuracy of 1
    assert value_range([200.0]) == pytest.approx([190.0, 210.0])
    assert value_range([0.0]) == pytest.approx([0.0, 0.05])
    assert value_range([-4.0]) == pytest.approx([-4.2, -3.8])


def test_missing_and_infinite_values_are_left_out():
    assert value_range([None, 0.5, math.inf, 0.7, math.nan]) == pytest.approx([0.48, 0.72])
    assert value_range([None, math.nan]) is None
    assert value_range([]) is None
