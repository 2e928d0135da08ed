"""Axes for the charts the pages draw themselves (a run's metrics), not the pipelines' own figures."""

from __future__ import annotations

import math
from collections.abc import Iterable

# Room left above and below the data, as a share of its spread.
PAD_SHARE = 0.1
# The spread given to a series that never changes (plotly would otherwise span 0 to twice the value).
FLAT_PAD = 0.05


def value_range(values: Iterable[float | None]) -> list[float] | None:
    """The y-axis range for a metric: the data's range padded by a tenth on each side; for values that
    all lie in [0, 1] (accuracy, F1, a fraction) never beyond 0 or 1. None: no finite value to show."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    spread = high - low
    pad = spread * PAD_SHARE if spread else max(abs(high) * FLAT_PAD, FLAT_PAD)
    bottom, top = low - pad, high + pad
    if 0.0 <= low and high <= 1.0:
        bottom, top = max(0.0, bottom), min(1.0, top)
    return [bottom, top]
