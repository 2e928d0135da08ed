"""A run's logged metrics, as its detail (page and API) reads them."""

from __future__ import annotations

from mlopen.core import prepared
from mlopen.runs.models import RunMetric


def points_of(run_id: int) -> list[tuple[str, int | None, float | None]]:
    """(name, step, value) of every metric the run logged, by name, then step, then as logged."""
    return _POINTS.rows(run_id=run_id)


# Every run's detail asks, the answer to a waiting POST included: compiled once (mlopen.core.prepared).
_POINTS = prepared.CompiledRows(
    lambda run_id: (
        RunMetric.objects.filter(run_id=run_id).order_by("name", "step", "id").values_list("name", "step", "value")
    ),
    run_id=-2_000_000_123,
)
