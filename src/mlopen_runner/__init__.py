"""Runs pipeline code in a child process and reports back. No Django here.

Public entry points: Job, Outcome, execute, evaluate_params, sandbox_status (and the Callbacks
protocol execute takes). The child imports this package too, inside per-pipeline environments
that may lack psutil, so the parent-side modules load only when first asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlopen_runner.job import Job, Outcome

if TYPE_CHECKING:
    from mlopen_runner.sandbox import sandbox_status
    from mlopen_runner.supervisor import execute
    from mlopen_runner.watching import Callbacks

__all__ = ["Callbacks", "Job", "Outcome", "evaluate_params", "execute", "sandbox_status"]

_LAZY = {
    "execute": "mlopen_runner.supervisor",
    "Callbacks": "mlopen_runner.watching",
    "sandbox_status": "mlopen_runner.sandbox",
}

# Reading a control file's form should not take long; a get_params that does is broken.
PARAMS_TIMEOUT_S = 30.0


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlopen_runner' has no attribute {name!r}")


def evaluate_params(control_path: str, work_dir: str, **job_options: Any) -> Outcome:
    """Ask a control file for its forms: Outcome.params = {"train": spec, "run": spec}.

    `job_options` are further Job fields (python, extra_pythonpath, memory_mb...).
    """
    from mlopen_runner.supervisor import execute  # noqa: PLC0415 - parent side only: the child may lack psutil

    job_options.setdefault("timeout_s", PARAMS_TIMEOUT_S)
    return execute(Job(kind="params", control_path=control_path, work_dir=work_dir, **job_options))
