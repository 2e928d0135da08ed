"""Cold runs: a fresh child process per job, watched until it exits, then killed with all it started.

The watching itself (output, events, limits, cancelling, the outcome) is mlopen_runner.watching's,
shared with warm runs; this module adds how the child is started and what is left to clean up.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from mlopen_runner import sandbox, untrusted
from mlopen_runner.job import (
    EVENTS_FD_VARIABLE,
    JOB_FILE,
    OUTPUT_FILES,
    Job,
    Outcome,
    disk_full_message,
    is_disk_full,
)
from mlopen_runner.watching import Callbacks, JobWatch, NoCallbacks, ProcessTree

_THREAD_CAP_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# The folder holding mlopen_runner and mlopenapp, so the child can import both.
_RUNNER_ROOT = str(Path(__file__).resolve().parent.parent)


def execute(job: Job, callbacks: Callbacks | None = None) -> Outcome:
    """Run `job` in a fresh child process; blocks until it is over."""
    try:
        job = _prepare_work_dir(job)
    except sandbox.SandboxUnavailable as exc:
        return Outcome(status="failed", error=str(exc))
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        return Outcome(status="failed", error=disk_full_message(job.work_dir))
    supervision = _Supervision(job, callbacks or NoCallbacks())
    try:
        supervision.start()
    except (OSError, sandbox.SandboxUnavailable) as exc:
        why = disk_full_message(job.work_dir) if is_disk_full(exc) else str(exc)
        return Outcome(status="failed", error=f"Could not start the pipeline process: {why}")
    try:
        supervision.watch()
    finally:
        supervision.finish()
    return supervision.outcome()


def child_environment(job: Job, events_fd: int) -> dict[str, str]:
    """Built from nothing, so no secret of the web process (DATABASE_URL, DJANGO_*) reaches the pipeline."""
    python = job.python or sys.executable
    return {
        "PATH": os.pathsep.join([os.path.dirname(python), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": job.work_dir,
        # The sandbox's /tmp is this folder too; unsandboxed, temporary files still land in the
        # job's folder, where the disk budget counts them and they go with it.
        "TMPDIR": sandbox.tmp_dir(job.work_dir),
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join(runner_paths(job)),
        "PYTHONUNBUFFERED": "1",
        # Keeps __pycache__ folders out of the stored pipeline folders.
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        **{variable: "2" for variable in _THREAD_CAP_VARIABLES},
        EVENTS_FD_VARIABLE: str(events_fd),
    }


def runner_paths(job: Job) -> list[str]:
    """The folders a pipeline process for `job` needs on PYTHONPATH to import the runner."""
    # Another interpreter (a pipeline's own venv) gets the runner only from the SDK overlay in
    # extra_pythonpath: our root may be the platform's site-packages, and PYTHONPATH entries
    # would shadow the packages installed in that venv.
    own_root = [_RUNNER_ROOT] if job.python is None else []
    return [*job.extra_pythonpath, *own_root]


def _prepare_work_dir(job: Job) -> Job:
    """The job as its child gets it, written to its folder. An earlier process may have written in
    a reused folder: its files are removed (never followed), so none passes for this job's."""
    os.makedirs(job.work_dir, exist_ok=True)
    for name in OUTPUT_FILES:
        Path(job.work_dir, name).unlink(missing_ok=True)
    if not sandbox.active():  # RLIMIT_NPROC would count every process of the worker's user
        job = replace(job, max_processes=None)
    untrusted.create_file(os.path.join(job.work_dir, JOB_FILE), job.to_json().encode())
    return job


class _Supervision(JobWatch):
    """The job ends when the child exits; the pipes are this job's alone."""

    def start(self) -> None:
        # stdout and stderr share one pipe so the log keeps their interleaving.
        output_read, output_write = os.pipe()
        events_read, events_write = os.pipe()
        python = self.job.python or sys.executable
        command = [python, "-m", "mlopen_runner.child", os.path.join(self.job.work_dir, JOB_FILE)]
        try:
            self.launch = sandbox.wrap_command(command, self.job, python, runner_paths(self.job))
            process = self.launch.popen(
                cwd=self.job.work_dir,
                env=child_environment(self.job, events_write),
                stdout=output_write,
                stderr=output_write,
                pass_fds=(events_write,),
                start_new_session=True,  # its own group, killed as one
            )
        except (OSError, sandbox.SandboxUnavailable):
            os.close(output_read)
            os.close(events_read)
            raise
        finally:
            os.close(output_write)
            os.close(events_write)
        self.started = time.monotonic()
        self.tree = ProcessTree(process)
        self.listen(output_read, self.on_output)
        self.listen(events_read, self.on_events)

    def finish(self) -> None:
        """Kill whatever is left of the child's tree, read the rest of its output, close the pipes."""
        self.tree.kill()
        self.launch.release()
        self.drain()
        for key in list(self.selector.get_map().values()):
            self.selector.unregister(key.fd)
            os.close(key.fd)
        self.selector.close()
        self.finish_output()

    def pipe_closed(self, fd: int) -> None:
        os.close(fd)
