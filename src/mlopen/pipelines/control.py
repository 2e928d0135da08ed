"""Reading an uploaded control file: the errors an upload can meet, and the forms get_params declares,
read in a child process (the pipeline's own environment, when it has one)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from mlopen.pipelines import params as params_mod
from mlopen_runner import Job, execute


class PipelineRejected(ValueError):
    """An upload that cannot be stored. ``field`` names the form field the message belongs to;
    ``status`` is how pages and the API answer it (400, or 507 when the server's disk is full)."""

    def __init__(self, message: str, field: str | None = "control", status: int = 400):
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


class PipelineForbidden(PipelineRejected):
    """The user may not do this to the pipeline (pages and API answer 403); the message says who may."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message, field=field)


class _CollectOutput:
    """Runner callbacks that keep the child's output, to quote it when get_params fails."""

    def __init__(self) -> None:
        self.text = ""

    def output(self, text: str) -> None:
        self.text += text

    def event(self, event: dict) -> None:
        pass

    def tick(self) -> bool:
        return False


def pipeline_traceback(log: str, code_dir: Path) -> str:
    """The frames of a child's traceback that are in the uploaded files, with their paths shortened.

    The platform's own frames (the runner) and the staging folder's location are of no use to the
    author and reveal server paths.
    """
    lines = log.strip().splitlines()
    start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("Traceback")), None)
    if start is None:
        return "\n".join(lines[-10:]).replace(f"{code_dir}/", "")
    kept, keep_next = [], False
    prefix = f'  File "{code_dir}/'
    for line in lines[start + 1 :]:
        if line.startswith('  File "'):
            keep_next = line.startswith(prefix)
            if keep_next:
                kept.append(line.replace(f"{code_dir}/", ""))
        elif line.startswith("    "):
            if keep_next:
                kept.append(line)
        else:
            kept.append(line)
    return "\n".join(["Traceback (most recent call last):", *kept]) if kept else ""


def evaluate_params(
    control_path: Path, work_dir: Path, python: str | None = None, extra_pythonpath: list[str] | None = None
) -> dict:
    """Run get_params(run=True/False) in a child process; return {"train": spec, "run": spec}.

    ``python`` and ``extra_pythonpath``: a pipeline's own environment (see environments.py).
    """
    job = Job(
        kind="params",
        control_path=str(control_path),
        work_dir=str(work_dir),
        timeout_s=settings.MLOPEN_PARAMS_TIMEOUT,
        memory_mb=settings.MLOPEN_RUN_MEMORY_MB,
        max_log_bytes=64 * 1024,
        max_result_bytes=4 * 1024 * 1024,
        python=python,
        extra_pythonpath=list(extra_pythonpath or []),
    )
    collected = _CollectOutput()
    outcome = execute(job, collected)
    if outcome.status != "succeeded":
        if outcome.error and outcome.error.startswith("Run timed out"):
            raise PipelineRejected(
                f"Reading the control file's parameters took longer than {settings.MLOPEN_PARAMS_TIMEOUT} s "
                "(MLOPEN_PARAMS_TIMEOUT). mlopen imports the file and calls get_params at upload to build its "
                "forms, so module-level code and get_params must return quickly."
            )
        message = f"Loading the control file failed: {outcome.error}"
        trace = pipeline_traceback(collected.text, control_path.parent)
        if trace:
            message += f"\n{trace}"
        raise PipelineRejected(message)
    specs = outcome.params if isinstance(outcome.params, dict) else {}
    try:
        return {
            "train": params_mod.spec_from_runner(specs.get("train")),
            "run": params_mod.spec_from_runner(specs.get("run")),
        }
    except params_mod.SpecInvalid as exc:
        raise PipelineRejected(f"get_params declares a form mlopen cannot offer: {exc}") from None
