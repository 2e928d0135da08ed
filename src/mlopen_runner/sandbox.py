"""Where the child runs: inside bubblewrap when it works here, as a plain process otherwise.

The probe runs once per process: `bwrap <the same isolation flags> true`, first with a distinct
uid, then without. In containers bwrap often cannot create namespaces; the fallback is a
plain process with the clean environment the supervisor builds either way.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlopen_runner.job import Job

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
_NOBODY = ("--uid", "65534", "--gid", "65534")
_PROBE_TIMEOUT_S = 10


@dataclass(frozen=True)
class _Probe:
    kind: str  # "bubblewrap" | "process"
    reason: str
    bwrap: str = ""
    distinct_uid: bool = False


def sandbox_status() -> dict[str, str]:
    probe = _probe()
    return {"kind": probe.kind, "reason": probe.reason}


def wrap_command(command: list[str], job: Job, python: str, runner_paths: Iterable[str]) -> list[str]:
    """`command` as the sandbox runs it. `runner_paths` are the folders on the child's PYTHONPATH."""
    probe = _probe()
    if probe.kind != "bubblewrap":
        return command
    readable = [*_python_prefixes(python), *runner_paths, os.path.dirname(job.control_path),
                *job.data_files(), *([job.model_path] if job.model_path else []), *job.readonly_paths]
    return [probe.bwrap, *_isolation_flags(job.allow_network, probe.distinct_uid), *_ro_binds(readable),
            "--bind", job.work_dir, job.work_dir, "--chdir", job.work_dir, "--", *command]


def signal_from_exit_status(returncode: int) -> int | None:
    """The signal that ended the child, if one did.

    Popen reports it as a negative status; bwrap exits with 128 + the signal of its child, so under
    bubblewrap an os._exit(137) would read as SIGKILL (the pipeline's own exit() is reported in
    error.json first).
    """
    if returncode < 0:
        return -returncode
    if _probe().kind == "bubblewrap" and 128 < returncode < 128 + 65:
        return returncode - 128
    return None


@functools.cache
def _probe() -> _Probe:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return _Probe("process", "bwrap is not installed")
    failure = ""
    for distinct_uid in (True, False):
        failure = _try_bwrap([bwrap, *_isolation_flags(False, distinct_uid), "true"])
        if not failure:
            uid_note = "as uid 65534" if distinct_uid else "without a distinct uid (--uid is refused here)"
            return _Probe("bubblewrap", f"bwrap works {uid_note}", bwrap, distinct_uid)
    return _Probe("process", f"bwrap is installed but cannot create a sandbox here: {failure}")


def _try_bwrap(command: list[str]) -> str:
    """'' when the command succeeds, otherwise what went wrong."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if completed.returncode == 0 else (completed.stderr.strip() or f"exit status {completed.returncode}")


def _isolation_flags(allow_network: bool, distinct_uid: bool) -> list[str]:
    flags = ["--unshare-all", "--die-with-parent", "--new-session"]
    if allow_network:
        flags.append("--share-net")
    if distinct_uid:
        flags += _NOBODY
    flags += _system_binds()
    # /tmp comes before the job's binds: a tmpfs mounted later would hide a work_dir under /tmp.
    flags += ["--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]
    return flags


def _system_binds() -> list[str]:
    flags = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):  # merged-/usr systems: /lib -> usr/lib
            flags += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            flags += ["--ro-bind", path, path]
    return flags


def _ro_binds(paths: Iterable[str]) -> list[str]:
    # --ro-bind-try: a missing input reaches the pipeline as FileNotFoundError, as it would
    # without the sandbox, instead of bwrap refusing to start.
    flags = []
    for path in dict.fromkeys(os.path.abspath(path) for path in paths):
        flags += ["--ro-bind-try", path, path]
    return flags


def _python_prefixes(python: str) -> list[str]:
    """The installation the interpreter belongs to: its venv (if any) and the base Python."""
    launcher = Path(os.path.abspath(python))
    prefixes = [launcher.parent.parent, Path(os.path.realpath(python)).parent.parent]
    venv_config = launcher.parent.parent / "pyvenv.cfg"
    if venv_config.exists():  # venvs made with --copies do not link to their base Python
        for line in venv_config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                prefixes.append(Path(value.strip()).parent)
    return [str(prefix) for prefix in prefixes]
