"""The pipeline SDK: what control files call while they run.

Legacy control files reach these through `from mlopenapp.utils import io_handler as io`.
Standard library only: this module runs inside per-pipeline virtual environments.

What a job saves (save_pipeline, save) is pickled at the call, as the original pickled each object
into its storage at once: a later change to the object does not change what was saved, a pickling
error points at the line that saved, and `load` finds it straight away. A train job writes the
whole of it to its folder at every call (model.pkl, and its names in model.json, which the worker
reads instead of unpickling anything). model.pkl keeps each object as its own pickle:

    {"format": 2, "label": str, "models": [(name, bytes)], "args": [(name, bytes)],
     "objects": [(type, name, bytes)]}

so a run unpickles only what it asks for, and each time afresh (no run can change what the next
one gets). Models trained before this format ({"models": [(name, object)], "args": ..., "label"})
still load.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlopen_runner.job import MODEL_FILE, MODEL_MANIFEST_FILE

# Longer texts are cut so an event line (at worst 6 bytes a character once JSON-escaped) stays
# under PIPE_BUF and is written atomically even when a pipeline reports from several threads.
_MAX_MESSAGE_CHARS = 500
MODEL_FORMAT = 2
PKL_SUFFIX = ".pkl"

_events_fd: int | None = None


@dataclass
class _Kept:
    """What one train saved: each object pickled on its own, by name."""

    label: str = ""
    models: list[tuple[str, bytes]] = field(default_factory=list)
    args: list[tuple[str, bytes]] = field(default_factory=list)
    objects: dict[tuple[str | None, str], bytes] = field(default_factory=dict)  # (type, name) -> pickle
    has_pipeline: bool = False

    def find(self, name: str, kind: str | None) -> bytes | None:
        """What `load(name, kind)` gets: an object save()d last, else save_pipeline's (which the
        original stored as type "model" and "arg" too)."""
        if (kind, name) in self.objects:
            return self.objects[(kind, name)]
        listed = {"model": self.models, "arg": self.args}.get(kind or "", [])
        return next((pickled for listed_name, pickled in reversed(listed) if listed_name == name), None)

    def pipeline(self) -> tuple[Any, dict[str, Any]]:
        """model = the last saved model (as the original's loop over them left it), args by name."""
        model = pickle.loads(self.models[-1][1]) if self.models else None
        return model, {name: pickle.loads(pickled) for name, pickled in self.args}

    def payload(self) -> bytes:
        objects = [(kind, name, pickled) for (kind, name), pickled in self.objects.items()]
        content = {"format": MODEL_FORMAT, "label": self.label, "models": self.models, "args": self.args}
        return pickle.dumps({**content, "objects": objects}, protocol=pickle.HIGHEST_PROTOCOL)

    def manifest(self) -> dict[str, Any]:
        """The names the worker shows: save_pipeline's, then those save()d as a model or an arg."""
        names = {"models": [name for name, _ in self.models], "args": [name for name, _ in self.args]}
        for kind, name in self.objects:
            listed = names.get(f"{kind}s")
            if listed is not None and name not in listed:
                listed.append(name)
        return {"label": self.label, **names}


_kept = _Kept()
_keep_in: str | None = None  # a train's folder, where what it saves is written at once
_trained: bytes | None = None  # the pickled trained model the job was given
_trained_kept: _Kept | None = None


def begin_job(trained: bytes | None, keep_in: str | None = None) -> None:
    """Start a job: forget what an earlier one saved; `trained` is the model.pkl it was given (or
    None); what it saves is written to `keep_in` at once (a train's folder) or kept in memory."""
    global _kept, _keep_in, _trained, _trained_kept
    _kept, _keep_in, _trained, _trained_kept = _Kept(), keep_in, trained, None


def given_pipeline() -> tuple[Any, dict[str, Any]]:
    """model and args as run_pipeline receives them, unpickled afresh from the trained model."""
    return _trained_store().pipeline()


def save_pipeline(models: Any, args: Any, name: str) -> None:
    """Keep trained objects for later runs.

    `models` and `args` are lists of `(object, "name")` tuples, as the original mlopen took them.
    A later call replaces what an earlier one kept; a run gets the last model as `model`.
    """
    pickled_models = _pickled_pairs(models, "models")
    pickled_args = _pickled_pairs(args, "args")
    _kept.models, _kept.args, _kept.label, _kept.has_pipeline = pickled_models, pickled_args, str(name), True
    _write_kept()


def save(arg_object: Any, name: str, save_to_db: bool = False, type: str | None = None) -> bool:  # noqa: A002 - the original's keyword
    """Keep one object under `name` and `type` ("model", "arg", "graphs"...) for load() in this job
    and in later runs of the model it trains. `save_to_db` is accepted and means nothing more here:
    everything saved is kept with the trained model. False, as in the original, when it cannot be
    pickled (the reason is printed)."""
    try:
        pickled = pickle.dumps(arg_object, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - pickling can raise anything the object's __reduce__ raises
        print(f"mlopen: io.save({str(name)[:100]!r}) could not pickle the object: {exc}", file=sys.stderr)
        return False
    _kept.objects.pop((type, _stripped(name)), None)  # a save again moves to the end: the newest wins in order
    _kept.objects[(type, _stripped(name))] = pickled
    _write_kept()
    return True


def load(name: str, type: str | None) -> Any:  # noqa: A002 - the original's keyword
    """What save() (or save_pipeline) kept under `name` and `type`: in this job, else in the trained
    model the job was given. `name` may end in ".pkl" (the original's file name). A fresh copy each
    call; False, as in the original, when nothing was saved so (the reason is printed)."""
    key = _stripped(name)
    pickled = _kept.find(key, type)
    if pickled is None:
        pickled = _trained_store().find(key, type)
    if pickled is None:
        print(f"mlopen: io.load({str(name)[:100]!r}, {type!r}): nothing was saved under that name", file=sys.stderr)
        return False
    return pickle.loads(pickled)


def load_pipeline(pipeline: Any = None) -> tuple[Any, dict[str, Any]]:
    """(model, args) as run_pipeline gets them: what this job's save_pipeline kept, else the trained
    model's. The original took its pipeline record; a run only ever sees its own pipeline."""
    return _kept.pipeline() if _kept.has_pipeline else given_pipeline()


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


def _trained_store() -> _Kept:
    global _trained_kept
    if _trained_kept is None:
        _trained_kept = _decoded(_trained)
    return _trained_kept


def _decoded(trained: bytes | None) -> _Kept:
    if trained is None:
        return _Kept()
    saved = pickle.loads(trained)
    if saved.get("format") == MODEL_FORMAT:
        objects = {(kind, name): pickled for kind, name, pickled in saved.get("objects") or []}
        models, args = list(saved.get("models") or []), list(saved.get("args") or [])
        return _Kept(str(saved.get("label") or ""), models, args, objects, has_pipeline=bool(models or args))
    # Trained before objects were pickled one by one: pickled again here, so each use is a fresh copy.
    pairs = {key: [(n, _repickled(obj)) for n, obj in saved.get(key) or []] for key in ("models", "args")}
    return _Kept(str(saved.get("label") or ""), pairs["models"], pairs["args"], has_pipeline=True)


def _repickled(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _write_kept() -> None:
    if _keep_in is None:
        return
    Path(_keep_in, MODEL_FILE).write_bytes(_kept.payload())
    Path(_keep_in, MODEL_MANIFEST_FILE).write_text(json.dumps(_kept.manifest()))


def _stripped(name: Any) -> str:
    return str(name).removesuffix(PKL_SUFFIX)


def _pickled_pairs(pairs: Any, what: str) -> list[tuple[str, bytes]]:
    if pairs is None:
        return []
    named = []
    for index, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[1], str)):
            raise TypeError(
                f'save_pipeline: {what}[{index}] must be an (object, "name") tuple, got {type(pair).__name__}'
            )
        try:
            named.append((pair[1], pickle.dumps(pair[0], protocol=pickle.HIGHEST_PROTOCOL)))
        except Exception as exc:  # noqa: BLE001 - pickling can raise anything the object's __reduce__ raises
            raise TypeError(f"save_pipeline: {what}[{index}] ({pair[1]!r}) cannot be pickled: {exc}") from exc
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
