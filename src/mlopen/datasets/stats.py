"""A CSV dataset's shape and per-column statistics, computed in bounded time for its page.

Only the file's first STATS_BYTES (and at most STATS_ROWS rows) are parsed, whatever its size, so
a 1 GB upload costs what an 8 MB one does; the result says whether it covers the whole file and,
when it does not, the row count is an estimate from the bytes read. Results are cached by content
(sha256): a dataset's bytes never change.
"""

from __future__ import annotations

import io
import math
from typing import Any

from django.core.cache import cache

from mlopen.core import storage
from mlopen.datasets.models import Dataset
from mlopen.datasets.services import guess_csv_format

STATS_BYTES = 8 * 1024 * 1024
STATS_ROWS = 50_000
_CACHE_SECONDS = 24 * 3600


def column_stats(dataset: Dataset, *, max_bytes: int | None = None, max_rows: int | None = None) -> dict | None:
    """{"rows", "rows_exact", "sampled_rows", "complete", "columns": [{"name", "type", "missing", "distinct",
    "min", "max", "mean"}]} for a CSV dataset; None for other kinds; {"problem": ...} when it cannot be parsed."""
    if dataset.kind != Dataset.Kind.CSV:
        return None
    max_bytes, max_rows = max_bytes or STATS_BYTES, max_rows or STATS_ROWS
    key = f"mlopen:dataset-stats:{dataset.sha256 or dataset.pk}:{max_bytes}:{max_rows}"
    found = cache.get(key)
    if found is None:
        found = _compute(dataset, max_bytes, max_rows)
        cache.set(key, found, _CACHE_SECONDS)
    return found


def _compute(dataset: Dataset, max_bytes: int, max_rows: int) -> dict:
    import pandas as pd  # noqa: PLC0415 - heavy; only a dataset's page needs it

    with storage.open_stored(dataset.file) as handle:
        head = handle.read(max_bytes + 1)
    whole_file = len(head) <= max_bytes
    if not whole_file:
        head = head[: head.rfind(b"\n", 0, max_bytes) + 1]  # whole lines only
    lines = head[:65536].decode("utf-8", errors="replace").splitlines()
    try:
        frame = pd.read_csv(
            io.BytesIO(head),
            **guess_csv_format(lines),
            nrows=max_rows + 1,
            encoding_errors="replace",
            low_memory=False,
        )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        return {"problem": f"The statistics could not be computed: {str(exc).splitlines()[0][:200]}"}
    more_rows = len(frame) > max_rows
    frame = frame.iloc[:max_rows]
    complete = whole_file and not more_rows
    rows = len(frame)
    if not complete:
        # An estimate: the rows read, scaled by the share of the file's bytes they took.
        used = _bytes_of_rows(head, rows + 1) if more_rows else len(head)
        rows = round(rows * max(1, dataset.size) / max(1, used))
    return {
        "rows": rows,
        "rows_exact": complete,
        "sampled_rows": len(frame),
        "complete": complete,
        "columns": [_column(str(name), frame[name]) for name in frame.columns],
    }


def _bytes_of_rows(head: bytes, lines: int) -> int:
    """The bytes taken by the first ``lines`` lines (the header and the rows read)."""
    end = -1
    for _ in range(lines):
        end = head.find(b"\n", end + 1)
        if end == -1:
            return len(head)
    return end + 1


def _column(name: str, values) -> dict[str, Any]:
    kind = _type_of(values)
    out: dict[str, Any] = {
        "name": name,
        "type": kind,
        "missing": int(values.isna().sum()),
        "distinct": int(values.nunique(dropna=True)),
        "min": None,
        "max": None,
        "mean": None,
    }
    present = values.dropna()
    if kind in ("integer", "number") and len(present):
        out["min"], out["max"] = _plain(present.min()), _plain(present.max())
        if out["min"] is not None and out["max"] is not None:  # no infinity, so a mean that is a number
            out["mean"] = _plain(present.mean(), whole=False)
    elif kind == "boolean" and len(present):
        out["mean"] = float(present.astype(float).mean())  # the share of true values
    elif kind == "text" and len(present):
        text = present.astype(str)
        out["min"], out["max"] = text.min(), text.max()
    return out


def _type_of(values) -> str:
    import pandas as pd  # noqa: PLC0415 - heavy; only a dataset's page needs it

    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    if pd.api.types.is_integer_dtype(values):
        return "integer"
    if pd.api.types.is_float_dtype(values):
        # A column of whole numbers with gaps is read as floats: still integers to the reader.
        present = values.dropna()
        whole = len(present) and (present == present.round()).all() and present.abs().max() < float("inf")
        return "integer" if whole else "number"
    return "text"


def _plain(value, whole: bool = True) -> float | int | None:
    """A plain number for JSON; None for an infinity or NaN (a CSV may hold "inf"), which JSON has not."""
    number = float(value)
    if not math.isfinite(number):
        return None
    return int(number) if whole and number.is_integer() else number
