"""The pipeline SDK: what control files call while they run.

Legacy control files reach these through `from mlopenapp.utils import io_handler as io`.
Standard library only: this module runs inside per-pipeline virtual environments.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

# Longer texts are cut so an event line (at worst 6 bytes a character once JSON-escaped) stays
# under PIPE_BUF and is written atomically even when a pipeline reports from several threads.
_MAX_MESSAGE_CHARS = 500

_events_fd: int | None = None
_saved: dict[str, Any] | None = None


def save_pipeline(models: Any, args: Any, name: str) -> None:
    """Keep trained objects for later runs.

    `models` and `args` are lists of `(object, "name")` tuples, as the original mlopen took them.
    The runner pickles what the last call kept once `train` returns.
    """
    global _saved
    _saved = {"models": _named_objects(models, "models"), "args": _named_objects(args, "args"), "label": name}


def progress(fraction: float, message: str | None = None) -> None:
    """Report how far along the run is, as a fraction between 0 and 1."""
    if _events_fd is None:
        return
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        _warn(f"progress() needs a number between 0 and 1, got {fraction!r}")
        return
    value = 0.0 if math.isnan(value) else min(1.0, max(0.0, value))
    text = None if message is None else str(message)[:_MAX_MESSAGE_CHARS]
    _emit({"type": "progress", "fraction": value, "message": text})


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record one value of a named metric (loss, accuracy...), optionally at a training step."""
    if _events_fd is None:
        return
    try:
        number = float(value)
        step = None if step is None else int(step)
    except (TypeError, ValueError):
        _warn(f"log_metric({name!r}) needs a number and an integer step, got {value!r}, {step!r}")
        return
    # Strict JSON has no NaN; a diverged loss is still worth recording, as null.
    event = {
        "type": "metric",
        "name": str(name)[:_MAX_MESSAGE_CHARS],
        "value": number if math.isfinite(number) else None,
        "step": step,
    }
    _emit(event)


def attach_events(fd: int | None) -> None:
    """Send progress and metric events to `fd` (None: make them no-ops). Called by the child."""
    global _events_fd
    _events_fd = fd


def take_saved() -> dict[str, Any] | None:
    """What save_pipeline last kept, forgetting it so the next job starts clean."""
    global _saved
    saved, _saved = _saved, None
    return saved


def _named_objects(pairs: Any, what: str) -> list[tuple[str, Any]]:
    if pairs is None:
        return []
    named = []
    for index, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[1], str)):
            raise TypeError(
                f'save_pipeline: {what}[{index}] must be an (object, "name") tuple, got {type(pair).__name__}'
            )
        named.append((pair[1], pair[0]))
    return named


def _emit(event: dict[str, Any]) -> None:
    global _events_fd
    fd = _events_fd
    if fd is None:
        return
    line = json.dumps(event, allow_nan=False) + "\n"
    try:
        os.write(fd, line.encode("utf-8"))
    except OSError:
        # The parent stopped listening; reporting must never break the pipeline itself.
        _events_fd = None


def _warn(text: str) -> None:
    print(f"mlopen: {text}; ignored", file=sys.stderr)
