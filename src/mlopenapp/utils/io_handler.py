"""Legacy `io_handler`, with the original's functions, arguments and return values.

`save_pipeline(models, args, name)` keeps a train's models and args for later runs; `save(obj,
name, save_to_db=False, type=None)` and `load(name, type)` keep and find single objects (in the
same job, and in runs of the model the train made); `load_pipeline(pipeline)` gives `(model,
args)` as run_pipeline gets them. The original's upload helpers (`save_pipeline_file(s)`) wrote
into its shared pipelines folder; a run's code folder is read-only, so they refuse and say how
code reaches mlopen instead.
"""

from __future__ import annotations

import os
from typing import Any

from mlopen_runner.sdk import load, load_pipeline, log_metric, progress, save, save_pipeline
from mlopenapp import constants

__all__ = [
    "get_pipeline_list",
    "load",
    "load_pipeline",
    "log_metric",
    "progress",
    "save",
    "save_graphs",
    "save_pipeline",
    "save_pipeline_file",
    "save_pipeline_files",
]

_UPLOAD_INSTEAD = "a running pipeline cannot add code to mlopen; upload control and support files as a new version"


def save_graphs(graphs: Any, name: str) -> bool:
    """The fork's: keep a pipeline's graphs under `name` (type "graphs"), as save() does."""
    return save(graphs, name, True, "graphs")


def get_pipeline_list() -> list[str]:
    """Names (without .py) of the control files in the pipeline's code folder, as the original listed
    its pipelines folder: the files whose names end in "control.py"."""
    try:
        names = sorted(os.listdir(constants.CONTROL_DIR))
    except OSError:
        return []
    return [name.removesuffix(".py") for name in names if name.endswith("control.py")]


def save_pipeline_file(f: Any) -> None:
    """The original stored an uploaded control file here; raises PermissionError (see the module)."""
    raise PermissionError(f"save_pipeline_file({getattr(f, 'name', f)!r}): {_UPLOAD_INSTEAD}")


def save_pipeline_files(pipeline: str, files: Any) -> bool | tuple[bool, str]:
    """The original stored support files here: True with none to store, as it did; otherwise
    (False, why), its answer for a folder it could not create."""
    if not files:
        return True
    return False, _UPLOAD_INSTEAD
