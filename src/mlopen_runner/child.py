"""The child process: `python -m mlopen_runner.child JOB_JSON_PATH`.

Imports the control file, calls train / run_pipeline / get_params, and leaves its outputs in
work_dir (model.pkl, result.json, params.json or error.json). Standard library only: this runs
inside per-pipeline virtual environments.

`handle(job)` does one job and cleans up after itself, so a long-lived process could call it
repeatedly; `main()` adds what belongs to a fresh process (prepare_process(): limits, the events
pipe; the exit status). The warm child (mlopen_runner.warm) is built from the public functions here.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib.util
import inspect
import json
import os
import resource
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from mlopen_runner import images, legacy, sdk
from mlopen_runner.inputs import InputFile
from mlopen_runner.job import (
    ERROR_FILE,
    EVENTS_FD_VARIABLE,
    MB,
    PARAMS_FILE,
    RESULT_FILE,
    Job,
    disk_full_message,
    disk_limit_message,
    is_disk_full,
    memory_limit_message,
)
from mlopen_runner.results import dumps_strict, normalize_result, to_jsonable

# The parent enforces the memory limit on RSS; RLIMIT_AS only backs it up against allocations
# faster than its polling. Address space runs far ahead of RSS (the first pandas.read_csv
# reserves ~1.3 GB it never touches), so the backstop sits well above the limit.
ADDRESS_SPACE_HEADROOM_MB = 4096

_PR_SET_PDEATHSIG = 1  # prctl option: the signal this process gets when its parent dies

PARAM_TYPES = ("string", "integer", "float", "bool", "choice", "file", "upload")
PARAM_OPTIONS = ("default", "blank", "choices")
_MAX_ERROR_MESSAGE_CHARS = 2000


class JobFailed(Exception):
    """The pipeline failed; error.json is written and the traceback printed."""


def main(argv: list[str] | None = None) -> int:
    job = Job.from_json(Path((argv or sys.argv[1:])[0]).read_text())
    prepare_process(job)
    try:
        handle(job)
    except JobFailed:
        return 1
    return 0


def prepare_process(job: Job) -> None:
    """What a pipeline process does before any pipeline code runs in it."""
    die_with_parent()
    _drop_launch_dir_from_path()
    _limit_address_space(job.memory_mb)
    _limit_file_size(job.disk_mb)
    _limit_processes(job.max_processes)
    sdk.attach_events(_take_events_fd())


def handle(job: Job) -> None:
    """Do one job. Raises JobFailed after writing error.json when the pipeline fails."""
    os.chdir(job.work_dir)
    try:
        lay_out(job)
        sdk.begin_job(read_model(job.model_path), keep_in=job.work_dir if job.kind == "train" else None)
        with control_module(job.control_path) as module:
            _KIND_HANDLERS[job.kind](job, module)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from pipeline code are failures too
        report_failure(job, exc)
        raise JobFailed(str(exc)) from exc


def lay_out(job: Job, spare: str | None = None) -> None:
    """The original's working folder in the job's (mlopen_runner.legacy), before any pipeline code runs;
    `spare`: the last warm job's, to reuse if it is there."""
    refs = [job.input] if job.input else []
    named = [(ref["name"], ref["path"]) for ref in [*refs, *job.files.values()]]
    legacy.lay_out_work_dir(job.work_dir, os.path.dirname(job.control_path), named, spare)


def _train(job: Job, module: ModuleType) -> None:
    call_accepting(required_function(module, "train"), input_file(job), pipeline_params(job))


def _run(job: Job, module: ModuleType) -> None:
    run_pipeline = required_function(module, "run_pipeline")
    model, args = sdk.given_pipeline()
    returned = call_accepting(run_pipeline, input_file(job), model, args, pipeline_params(job))
    write_result(job, returned)


def write_result(job: Job, returned: object, inline_max_bytes: int = 0) -> str | None:
    """result.json from what run_pipeline returned, its images written beside it. A result of at
    most `inline_max_bytes` once quoted as a JSON string is returned instead of written: a warm
    process sends it with its reply (mlopen_runner.warm), saving a file per run."""
    writer = images.ImageWriter(job.work_dir, job.max_images, job.max_image_bytes)
    text = dumps_strict(normalize_result(returned, writer))
    # The length alone first: quoting a result of megabytes only to find it too long costs time.
    if inline_max_bytes and len(text) <= inline_max_bytes and len(json.dumps(text)) <= inline_max_bytes:
        return text
    Path(job.work_dir, RESULT_FILE).write_text(text)
    return None


def _describe_params(job: Job, module: ModuleType) -> None:
    get_params = getattr(module, "get_params", None)
    specs = {
        "train": normalize_param_spec(call_accepting(get_params, False) if get_params else None),
        "run": normalize_param_spec(call_accepting(get_params, True) if get_params else None),
    }
    Path(job.work_dir, PARAMS_FILE).write_text(dumps_strict(specs))


_KIND_HANDLERS: dict[str, Callable[[Job, ModuleType], None]] = {
    "train": _train,
    "run": _run,
    "params": _describe_params,
}


def normalize_param_spec(spec: object) -> dict[str, dict[str, Any]]:
    """What get_params returned, as {name: {"type": ..., and only the options given}}."""
    if spec is None or spec == "":
        return {}
    if not isinstance(spec, Mapping):
        raise TypeError(
            f'get_params must return a dict (or "" / None for no parameters), it returned {type(spec).__name__}'
        )
    return {str(name): _param_entry(str(name), entry) for name, entry in spec.items()}


def _param_entry(name: str, entry: object) -> dict[str, Any]:
    # ("string") is just "string" in Python, so bare names and (type, options) tuples both occur.
    options: Any  # the control file's own value, checked below
    if isinstance(entry, str):
        kind, options = entry, {}
    elif isinstance(entry, (tuple, list)) and len(entry) in (1, 2) and isinstance(entry[0], str):
        kind, options = entry[0], (entry[1] if len(entry) == 2 and entry[1] is not None else {})
    else:
        raise ValueError(f"parameter {name!r}: expected a type name or a (type, options) tuple, got {entry!r}")
    if kind not in PARAM_TYPES:
        raise ValueError(f"parameter {name!r} has unknown type {kind!r}; known types: {', '.join(PARAM_TYPES)}")
    if not isinstance(options, Mapping) or not set(options) <= set(PARAM_OPTIONS):
        raise ValueError(
            f"parameter {name!r}: options must be a dict with any of {', '.join(PARAM_OPTIONS)}, got {options!r}"
        )
    if kind == "choice" and not isinstance(options.get("choices"), (list, tuple)):
        raise ValueError(f"parameter {name!r} is a choice but gives no list of choices")
    return {"type": kind, **{option: to_jsonable(value) for option, value in options.items()}}


@contextlib.contextmanager
def control_module(control_path: str) -> Iterator[ModuleType]:
    """The control file imported as `mlopenapp.pipelines.<file stem>`, its folder first on sys.path.

    Its folder is the package `mlopenapp.pipelines` meanwhile (mlopen_runner.legacy), so support
    code imports as the original's did and a class the control file defines pickles under a name
    every later run can import. Models pickled before that name was used name the bare stem: the
    module answers to it too, but never over a module the runner already uses (a control file
    called json.py).
    """
    folder = os.path.dirname(control_path)
    name = legacy.control_module_name(control_path)
    stem = Path(control_path).stem
    registers_stem = stem not in sys.modules
    sys.path.insert(0, folder)
    try:
        with legacy.code_package(folder) as package:
            spec = importlib.util.spec_from_file_location(name, control_path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import the control file {control_path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            setattr(package, stem, module)
            if registers_stem:
                sys.modules[stem] = module
            spec.loader.exec_module(module)
            yield module
    finally:
        sys.path.remove(folder)
        if registers_stem:
            sys.modules.pop(stem, None)


def required_function(module: ModuleType, name: str) -> Callable[..., Any]:
    """The control file's function `name`; AttributeError, the run's error, if it defines none."""
    function: object = getattr(module, name, None)
    if not callable(function):
        raise AttributeError(f"the control file defines no {name}() function")
    return function


def call_accepting(function: Callable[..., Any], *args: Any) -> Any:
    """Call with as many leading arguments as the function declares: train(inpt), get_params()."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return function(*args)
    if any(parameter.kind is parameter.VAR_POSITIONAL for parameter in parameters):
        return function(*args)
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return function(*args[: len(positional)])


def input_file(job: Job) -> InputFile | None:
    """The job's input as the pipeline receives it."""
    return InputFile(**job.input) if job.input else None


def pipeline_params(job: Job) -> dict[str, Any]:
    """The job's params as the pipeline receives them: file params as InputFile objects."""
    return {**job.params, **{name: InputFile(path=ref["path"], name=ref["name"]) for name, ref in job.files.items()}}


def read_model(model_path: str | None) -> bytes | None:
    """The pickled model's bytes (a warm process keeps them for every run)."""
    if not model_path:
        return None
    with open(model_path, "rb") as file:
        return file.read()


def report_failure(job: Job, exc: BaseException) -> None:
    """Print the traceback to the log and write error.json, which the parent turns into the run's error."""
    # Drop the pipeline's locals first: after a MemoryError they hold the memory that ran out.
    traceback.clear_frames(exc.__traceback__)
    _start_at_pipeline_frames(exc, os.path.dirname(job.control_path))
    text = "".join(traceback.format_exception(exc))
    print(text, file=sys.stderr, end="")
    error = {"type": type(exc).__name__, "message": _message(exc, job)[:_MAX_ERROR_MESSAGE_CHARS], "traceback": text}
    Path(job.work_dir, ERROR_FILE).write_text(json.dumps(error))


def _start_at_pipeline_frames(exc: BaseException, code_dir: str) -> None:
    """Drop the runner's frames that come before the pipeline's from `exc` and the exceptions chained to it.

    Each traceback then starts at the first frame of a file in the control file's folder, so a
    run's traceback is the same cold and warm and shows no server paths of the platform (what the
    pipeline called, a library or the SDK, is kept). One with no such frame (the control file
    defines no run_pipeline) keeps only its exception line.
    """
    prefix = os.path.join(code_dir, "")
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        frame = current.__traceback__
        while frame is not None and not frame.tb_frame.f_code.co_filename.startswith(prefix):
            frame = frame.tb_next
        current.__traceback__ = frame
        pending += [current.__cause__, current.__context__]


def _message(exc: BaseException, job: Job) -> str:
    if isinstance(exc, MemoryError) and job.memory_mb:
        return memory_limit_message(job.memory_mb)
    if isinstance(exc, OSError) and exc.errno in (errno.EFBIG, errno.EDQUOT) and job.disk_mb:
        return disk_limit_message(job.disk_mb)
    if is_disk_full(exc):  # the host's disk, not the run's budget: "[Errno 28]" says neither
        return disk_full_message(job.work_dir)
    if isinstance(exc, SystemExit):
        return f"pipeline called exit({exc.code!r})"
    return str(exc)


def _drop_launch_dir_from_path() -> None:
    # `python -m` puts the working folder (work_dir) first on sys.path; files a pipeline writes
    # there must never shadow real modules.
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]


def die_with_parent() -> None:
    # bubblewrap's --die-with-parent does this inside the sandbox; as a plain process, a worker
    # killed with SIGKILL would otherwise leave its pipeline running with nobody enforcing limits.
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _limit_address_space(memory_mb: int | None) -> None:
    if memory_mb:
        limit = (memory_mb + ADDRESS_SPACE_HEADROOM_MB) * MB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _limit_file_size(disk_mb: int | None) -> None:
    # No one file may outgrow the whole budget between two of the parent's disk checks. Python
    # ignores SIGXFSZ, so a write past it fails with EFBIG, reported as the disk limit.
    if disk_mb:
        limit = disk_mb * MB
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _limit_processes(max_processes: int | None) -> None:
    # Under bubblewrap the sandbox has a user namespace of its own, where RLIMIT_NPROC counts only
    # its own processes and threads: a fork bomb stops there, not at the host's limit.
    if max_processes:
        resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))


def _take_events_fd() -> int | None:
    # Taken out of the environment so programs the pipeline starts never write to a number
    # that means something else to them.
    value = os.environ.pop(EVENTS_FD_VARIABLE, None)
    if value is None:
        return None
    fd = int(value)
    os.set_inheritable(fd, False)
    return fd


if __name__ == "__main__":
    sys.exit(main())
