"""A warm child: `python -m mlopen_runner.warm WARM_JSON_PATH` serves `run` jobs one at a time.

It is started exactly like the cold child (same sandbox, clean environment, limits) by
mlopen_runner.warm_pool, for one pipeline version and trained model. On its first job it imports
the control file and reads the pickled model into memory, and keeps both for the jobs after it: a
warm run pays neither for starting Python, nor for importing pandas and scikit-learn, nor for
reading the model from disk. Each run unpickles its own model and args from those bytes, so a
run cannot change what the next one gets (as with cold runs). Standard library only: this runs
inside per-pipeline virtual environments.

Protocol, one JSON object a line:
  parent -> child, on fd MLOPEN_WARM_IN_FD:   {"id": 7, "job": {...Job fields...}}
  child -> parent, on fd MLOPEN_WARM_OUT_FD:  {"done": 7, "retire": false, "result": "{...}"}
stdout and stderr (one pipe) and the events pipe belong to the process and are shared by its
jobs: the parent gives a job what arrives between sending it and its "done", and the child flushes
both streams before it says "done". The outputs (result.json or error.json) are the cold child's,
written to the job's own work_dir, except that a small result.json (MAX_INLINE_RESULT_BYTES) comes
as the text of "result" instead, and the parent reads it with the same limits and checks.
"retire": true means the process is about to exit and must not be given another job, and "why"
(then present) says why: the first import failed, the pipeline raised MemoryError or SystemExit,
or the job left the process different from a fresh one in a way the next run would notice (a
thread of its own still running, fds 0-2 or sys.stdin/stdout/stderr replaced or closed). The
first reply also has "loaded_mb", the process's RSS once the control file is imported and the model
read: what a fresh process would start a run with. The process exits when the parent closes its
end of the command pipe.

A *blank* process (MLOPEN_WARM_PREIMPORT set: the modules to import, comma-separated) is started
by mlopen_runner.preimport before anyone needs it, for a runtime rather than a pipeline: it imports
those modules (numpy, pandas, scikit-learn...; a name whose package the runtime lacks is skipped),
says {"ready": true, "imported": [...]} on the replies pipe, and waits. Its first job (acknowledged at once
with {"taken": id}: a death before that ran nothing of it) names the
control file and the model it is to load (copies the worker placed in the process's read-only
inputs folder; its sandbox binds nothing else of anyone's); from then on it is a warm process
like any other, for that job's owner only.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from mlopen_runner import child, legacy, sdk
from mlopen_runner.inputs import InputFile
from mlopen_runner.job import MB, Job

# The parent finds the protocol's pipe ends under these names (taken out of the environment at
# start, so programs the pipeline starts never see them).
COMMANDS_FD_VARIABLE = "MLOPEN_WARM_IN_FD"
REPLIES_FD_VARIABLE = "MLOPEN_WARM_OUT_FD"
# Set when the process has a PID namespace of its own (bubblewrap): every other process in it,
# but its init, was started by a job.
OWN_PIDS_VARIABLE = "MLOPEN_WARM_OWN_PID_NAMESPACE"
# Set for a blank process: the modules to import before the first job (comma-separated).
PREIMPORT_VARIABLE = "MLOPEN_WARM_PREIMPORT"
# A job's legacy layout, kept for the next job (mlopen_runner.legacy.set_aside_layout).
SPARE_LAYOUT = ".spare-layout"
# A run's result.json of at most this many bytes (quoted as a JSON string) goes in the "done"
# reply as "result" instead of a file; the parent reads replies of up to 64 KB (MAX_REPLY_BYTES).
MAX_INLINE_RESULT_BYTES = 32 * 1024


def main(argv: list[str] | None = None) -> int:
    template = Job.from_json(Path((argv or sys.argv[1:])[0]).read_text())
    child.prepare_process(template)
    commands = os.fdopen(_take_fd(COMMANDS_FD_VARIABLE), "rb")
    replies = _take_fd(REPLIES_FD_VARIABLE)
    own_pids = os.environ.pop(OWN_PIDS_VARIABLE, "") == "1"
    temporary = os.environ.get("TMPDIR", "")  # the process's /tmp: emptied after every job
    preimport = os.environ.pop(PREIMPORT_VARIABLE, None)
    if preimport is not None:
        imported = preimport_modules([name.strip() for name in preimport.split(",") if name.strip()])
        _flush_streams()
        _empty_folder(temporary)  # what the imports cached there is no job's
        os.write(replies, (json.dumps({"ready": True, "imported": imported}) + "\n").encode())
    with contextlib.ExitStack() as keep_loaded:
        server = _Server(template, keep_loaded)
        for line in commands:
            request = json.loads(line)
            if preimport is not None and server.module is None:
                # A blank process loads what its first job names (the parent's copies), once.
                first = request["job"]
                server.template = replace(template, control_path=first["control_path"], model_path=first["model_path"])
                # Before anything of the job runs: the parent knows a death from here on is the job's.
                os.write(replies, (json.dumps({"taken": request["id"]}) + "\n").encode())
            job = Job(**request["job"])
            why = server.handle(job)
            if own_pids:
                _end_leftover_processes()
            _empty_folder(temporary)
            _flush_streams()
            why = why or server.leftovers()
            if why is None:  # nothing of the job runs any more: its layout can wait for the next job
                legacy.set_aside_layout(job.work_dir, server.spare_layout(job))
            reply: dict[str, Any] = {"done": request["id"], "retire": why is not None}
            if server.result_text is not None:
                reply["result"], server.result_text = server.result_text, None
            if why is not None:
                reply["why"] = why
            if server.loaded_mb is not None:
                reply["loaded_mb"], server.loaded_mb = server.loaded_mb, None  # once, with the first job
            _write_all(replies, (json.dumps(reply) + "\n").encode())
            if why is not None:
                return 0
    return 0


def preimport_modules(names: list[str]) -> list[str]:
    """Import `names`, skipping those whose top-level package is not installed or fails to import;
    the names imported. Runs before any pipeline code, with the process's limits already set."""
    imported = []
    for name in names:
        try:
            if importlib.util.find_spec(name.partition(".")[0]) is None:
                continue
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a broken optional package must not stop the process
            continue
        imported.append(name)
    return imported


class _Server:
    """Holds the control module and the model between jobs."""

    def __init__(self, template: Job, keep_loaded: contextlib.ExitStack) -> None:
        self.template = template
        self.keep_loaded = keep_loaded
        self.module: ModuleType | None = None
        self.pickled_model: bytes | None = None
        self.loaded: _ProcessState | None = None
        self.loaded_mb: float | None = None
        self.result_text: str | None = None  # the last job's result, when small enough for the reply

    def handle(self, job: Job) -> str | None:
        """Do one run job, as the cold child's handle() would; why this process must retire, if it must."""
        os.chdir(job.work_dir)
        os.environ["HOME"] = job.work_dir
        self.result_text = None
        opened: list[InputFile] = []
        try:
            child.lay_out(job, self.spare_layout(job))  # before the first job imports the control file, as a cold run's
            if self.module is None:
                self._load()
            assert self.module is not None  # _load() set it
            run_pipeline = child.required_function(self.module, "run_pipeline")
            # Every run gets its own model and args, unpickled from bytes kept in memory, exactly
            # as a cold run would: a run_pipeline that changes its model cannot change the next
            # run's. Unpickling a small model costs well under a millisecond.
            sdk.begin_job(self.pickled_model)
            model, args = sdk.given_pipeline()
            returned = child.call_accepting(
                run_pipeline,
                _track(child.input_file(job), opened),
                model,
                args,
                _track_params(child.pipeline_params(job), opened),
            )
            self.result_text = child.write_result(job, returned, MAX_INLINE_RESULT_BYTES)
        except BaseException as exc:  # noqa: BLE001 - SystemExit from pipeline code is a failure too
            child.report_failure(job, exc)
            # An import that failed is retried by a fresh process; after MemoryError or exit()
            # the process is in no state to serve the next run.
            if self.module is None:
                return "the control file or the model failed to load"
            if not isinstance(exc, Exception) or isinstance(exc, MemoryError):
                return f"the pipeline raised {type(exc).__name__}"
        finally:
            for input_file in opened:  # the next job must not inherit this one's open files
                input_file.close()
        return None

    @staticmethod
    def spare_layout(job: Job) -> str:
        """Where the last job's layout waits for the next: beside the jobs' folders, in the process's own."""
        return os.path.join(os.path.dirname(job.work_dir), SPARE_LAYOUT)

    def leftovers(self) -> str | None:
        """What the job left behind that a fresh process would not have, as a reason to retire.

        Compared with the process as it was once the pipeline was loaded (what every cold run
        starts from, module-level code included): threads still running, and the standard streams.
        Cheap enough for every job: a list of threads, three fstat() calls.
        """
        if self.loaded is None:
            return None
        return self.loaded.changed_since()

    def _load(self) -> None:
        # The same order as the cold child: import the control file, then read the model.
        module = self.keep_loaded.enter_context(child.control_module(self.template.control_path))
        child.required_function(module, "run_pipeline")
        self.pickled_model = child.read_model(self.template.model_path)
        self.module = module
        self.loaded = _ProcessState()
        self.loaded_mb = _own_rss_mb()


class _ProcessState:
    """What of the process a job could break for the jobs after it, taken once the pipeline is loaded."""

    def __init__(self) -> None:
        self.threads = set(threading.enumerate())
        self.fds = {fd: _fd_identity(fd) for fd in _STANDARD_FDS}
        self.streams = (sys.stdin, sys.stdout, sys.stderr)

    def changed_since(self) -> str | None:
        """Why the process is no longer as it was, or None."""
        running = [thread for thread in threading.enumerate() if thread not in self.threads and thread.is_alive()]
        if running:
            names = ", ".join(sorted(thread.name for thread in running))
            return f"the job left {len(running)} thread(s) running ({names[:200]})"
        for fd, identity in self.fds.items():
            if _fd_identity(fd) != identity:
                return f"the job closed or replaced file descriptor {fd}"
        for name, stream in zip(("stdin", "stdout", "stderr"), self.streams):
            current = getattr(sys, name)
            if current is not stream or _closed(stream):
                return f"the job replaced or closed sys.{name}"
        return None


_STANDARD_FDS = (0, 1, 2)


def _fd_identity(fd: int) -> tuple[int, int] | None:
    try:
        status = os.fstat(fd)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _closed(stream: Any) -> bool:
    try:
        return bool(stream.closed)
    except Exception:  # noqa: BLE001 - whatever the pipeline put there
        return True


def _own_rss_mb() -> float | None:
    """This process's RSS from /proc (standard library only); None where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / MB, 1)


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


def _empty_folder(path: str) -> None:
    """Remove what a job left in the process's temporary folder, as a cold run's goes with its folder."""
    if not path:
        return
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if stream is not None:  # sys.__stdout__ is None without a stdout
                stream.flush()


def _write_all(fd: int, data: bytes) -> None:
    """Write all of `data`: a reply with a result is longer than a pipe writes at once (PIPE_BUF),
    and a signal the pipeline set up can cut a write short; an unfinished line is never a reply."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _take_fd(variable: str) -> int:
    fd = int(os.environ.pop(variable))
    os.set_inheritable(fd, False)
    return fd


if __name__ == "__main__":
    sys.exit(main())
