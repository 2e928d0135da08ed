"""Comparing 2 to 10 runs side by side: their parameters, metrics (last, min, max, and every
series), inputs and versions. The compare page and the compare API both read :func:`compare`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlopen.core.numbers import parse_id
from mlopen.runs.models import Run, RunMetric

MIN_RUNS = 2
MAX_RUNS = 10


class CompareInvalid(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def parse_ids(raw_values: list[str]) -> list[int]:
    """``ids=1,2,3`` (or ``ids=1&ids=2``) as a list of distinct ids, in the order given."""
    ids: list[int] = []
    for raw in raw_values:
        for part in (raw or "").split(","):
            part = part.strip()
            if not part:
                continue
            run_id = parse_id(part)
            if run_id is None:
                raise CompareInvalid(f"ids: run ids are whole numbers, not {part[:20]!r}.")
            if run_id not in ids:
                ids.append(run_id)
    if not MIN_RUNS <= len(ids) <= MAX_RUNS:
        raise CompareInvalid(f"ids: compare {MIN_RUNS} to {MAX_RUNS} runs, not {len(ids)}.")
    return ids


def visible_runs(user, ids: list[int]) -> list[Run]:
    """The runs in the order asked for; any id the user may not see is a 404 for all of them."""
    found = {
        run.pk: run
        for run in Run.objects.visible_to(user)
        .filter(pk__in=ids)
        .select_related("pipeline", "version", "owner", "input", "trained_model")
        .prefetch_related("tags")
    }
    missing = [pk for pk in ids if pk not in found]
    if missing:
        raise CompareInvalid(f"There is no run {', '.join(map(str, missing))} you can see.", status=404)
    return [found[pk] for pk in ids]


@dataclass
class Comparison:
    runs: list[Run]
    params: dict[str, list]
    differing_params: list[str]
    metrics: dict[str, list[dict | None]]
    series: dict[str, list[dict]]  # metric name -> per run {"x": [...], "y": [...]}


def _finite(value):
    return value if value is None or math.isfinite(value) else None


def compare(runs: list[Run]) -> Comparison:
    names: list[str] = []
    for run in runs:
        names.extend(key for key in (run.params or {}) if key not in names)
    params = {name: [(run.params or {}).get(name) for run in runs] for name in sorted(names)}
    differing = [name for name, values in params.items() if any(value != values[0] for value in values[1:])]

    position = {run.pk: index for index, run in enumerate(runs)}
    series: dict[str, list[dict]] = {}
    ordered = RunMetric.objects.filter(run_id__in=position).order_by("name", "run_id", "step", "id")
    for run_id, name, step, value in ordered.values_list("run_id", "name", "step", "value"):
        per_run = series.setdefault(name, [{"x": [], "y": []} for _ in runs])
        points = per_run[position[run_id]]
        points["x"].append(step if step is not None else len(points["x"]) + 1)
        points["y"].append(_finite(value))
    metrics: dict[str, list[dict | None]] = {}
    for name, per_run in series.items():
        metrics[name] = []
        for points in per_run:
            values = [value for value in points["y"] if value is not None]
            if not points["y"]:
                metrics[name].append(None)
                continue
            metrics[name].append(
                {
                    "last": points["y"][-1],
                    "min": min(values) if values else None,
                    "max": max(values) if values else None,
                }
            )
    return Comparison(runs=runs, params=params, differing_params=differing, metrics=metrics, series=series)
