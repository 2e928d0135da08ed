"""A warm child: `python -m mlopen_runner.warm WARM_JSON_PATH` serves `run` jobs one at a time.

It is started exactly like the cold child (same sandbox, clean environment, limits) by
mlopen_runner.warm_pool, for one pipeline version and trained model. On its first job it imports
the control file and reads the pickled model into memory, and keeps both for the jobs after it: a
warm run pays neither for starting Python, nor for importing pandas and scikit-learn, nor for
reading the model from disk. Each run unpickles its own model and args from those bytes, so a
run cannot change what the next one gets (as with cold runs). Standard library only: this runs inside per-pipeline virtual environments.

Protocol, one JSON object a line:
  parent -> child, on fd MLOPEN_WARM_IN_FD:   {"id": 7, "job": {...Job fields...}}
  child -> parent, on fd MLOPEN_WARM_OUT_FD:  {"done": 7, "retire": false}
stdout and stderr (one pipe) and the events pipe belong to the process and are shared by its
jobs: the parent gives a job what arrives between sending it and its "done", and the child flushes
both streams before it says "done". The outputs (result.json or error.json) are the cold child's,
written to the job's own work_dir. "retire": true means the process is about to exit and must not
be given another job (the first import failed, or the pipeline raised MemoryError or SystemExit).
The process exits when the parent closes its end of the command pipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from mlopen_runner import child, sdk
from mlopen_runner.inputs import InputFile
from mlopen_runner.job import RESULT_FILE, Job
from mlopen_runner.results import dumps_strict, normalize_result

# The parent finds the protocol's pipe ends under these names (taken out of the environment at
# start, so programs the pipeline starts never see them).
COMMANDS_FD_VARIABLE = "MLOPEN_WARM_IN_FD"
REPLIES_FD_VARIABLE = "MLOPEN_WARM_OUT_FD"
# Set when the process has a PID namespace of its own (bubblewrap): every other process in it,
# but its init, was started by a job.
OWN_PIDS_VARIABLE = "MLOPEN_WARM_OWN_PID_NAMESPACE"


def main(argv: list[str] | None = None) -> int:
    template = Job.from_json(Path((argv or sys.argv[1:])[0]).read_text())
    child.prepare_process(template.memory_mb)
    commands = os.fdopen(_take_fd(COMMANDS_FD_VARIABLE), "rb")
    replies = _take_fd(REPLIES_FD_VARIABLE)
    own_pids = os.environ.pop(OWN_PIDS_VARIABLE, "") == "1"
    with contextlib.ExitStack() as keep_loaded:
        server = _Server(template, keep_loaded)
        for line in commands:
            request = json.loads(line)
            retire = server.handle(Job(**request["job"]))
            if own_pids:
                _end_leftover_processes()
            _flush_streams()
            os.write(replies, (json.dumps({"done": request["id"], "retire": retire}) + "\n").encode())
            if retire:
                return 0
    return 0


class _Server:
    """Holds the control module and the model between jobs."""

    def __init__(self, template: Job, keep_loaded: contextlib.ExitStack) -> None:
        self.template = template
        self.keep_loaded = keep_loaded
        self.module: ModuleType | None = None
        self.pickled_model: bytes | None = None

    def handle(self, job: Job) -> bool:
        """Do one run job, as the cold child's handle() would; True when this process must retire."""
        os.chdir(job.work_dir)
        os.environ["HOME"] = job.work_dir
        sdk.take_saved()
        opened: list[InputFile] = []
        try:
            if self.module is None:
                self._load()
            run_pipeline = child.required_function(self.module, "run_pipeline")
            # Every run gets its own model and args, unpickled from bytes kept in memory, exactly
            # as a cold run would: a run_pipeline that changes its model cannot change the next
            # run's. Unpickling a small model costs well under a millisecond.
            model, args = child.models_from(self.pickled_model)
            returned = child.call_accepting(run_pipeline, _track(child.input_file(job), opened), model,
                                            args, _track_params(child.pipeline_params(job), opened))
            Path(job.work_dir, RESULT_FILE).write_text(dumps_strict(normalize_result(returned)))
        except BaseException as exc:  # noqa: BLE001 - SystemExit from pipeline code is a failure too
            child.report_failure(job, exc)
            # An import that failed is retried by a fresh process; after MemoryError or exit()
            # the process is in no state to serve the next run.
            return self.module is None or not isinstance(exc, Exception) or isinstance(exc, MemoryError)
        finally:
            for input_file in opened:  # the next job must not inherit this one's open files
                input_file.close()
        return False

    def _load(self) -> None:
        # The same order as the cold child: import the control file, then read the model.
        module = self.keep_loaded.enter_context(child.control_module(self.template.control_path))
        child.required_function(module, "run_pipeline")
        self.pickled_model = child.read_model(self.template.model_path)
        self.module = module


def _track(input_file: InputFile | None, opened: list[InputFile]) -> InputFile | None:
    if input_file is not None:
        opened.append(input_file)
    return input_file


def _track_params(params: dict[str, Any], opened: list[InputFile]) -> dict[str, Any]:
    opened.extend(value for value in params.values() if isinstance(value, InputFile))
    return params


def _end_leftover_processes() -> None:
    """Kill what the job started and left running, as the end of a cold child's process group does.

    Only inside a PID namespace of our own, where /proc lists nothing but the sandbox (the parent
    does the same by scanning the process tree when there is no sandbox).
    """
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (1, me):
            with contextlib.suppress(OSError):
                os.kill(int(entry), signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:  # reap the ones that were our children
            pass


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()


def _take_fd(variable: str) -> int:
    fd = int(os.environ.pop(variable))
    os.set_inheritable(fd, False)
    return fd


if __name__ == "__main__":
    sys.exit(main())
