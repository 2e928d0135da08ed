"""Where the child runs: inside bubblewrap when it works here, as a plain process otherwise.

The probe runs once per process: `bwrap <the same isolation flags> true`, first with a distinct
uid, then without. In containers bwrap often cannot create namespaces; the fallback is a
plain process with the clean environment the supervisor builds either way.

Inside the sandbox everything but the run's work folder and a private /tmp is read-only, and
of /etc only what a Python program needs is there: bwrap started by root maps the sandbox's
uid to root outside, so a bound /etc/shadow (or /etc/ssl/private) would be readable.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlopen_runner.job import Job

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of /etc a Python program (numpy, pandas, scikit-learn, plotly, requests) reads: the loader
# cache, time zone, TLS trust store (not /etc/ssl/private), the symlinks of Debian's alternatives
# (libblas.so.3 and friends point there), MIME types and fonts.
_ETC_ALWAYS = (
    "/etc/ld.so.cache", "/etc/localtime", "/etc/timezone", "/etc/alternatives", "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf", "/etc/ca-certificates", "/etc/pki/tls/certs", "/etc/pki/ca-trust/extracted",
    "/etc/mime.types", "/etc/fonts",
)
# Name resolution, only for pipelines allowed on the network.
_ETC_NETWORK = ("/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf",
                "/etc/protocols", "/etc/services")
_NOBODY_ID = 65534
_NOBODY = ("--uid", str(_NOBODY_ID), "--gid", str(_NOBODY_ID))
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
            "--bind", job.work_dir, job.work_dir, *_READ_ONLY_ROOT, "--chdir", job.work_dir, "--", *command]


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
        failure = _try_bwrap([bwrap, *_isolation_flags(False, distinct_uid), *_READ_ONLY_ROOT, "true"])
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
    flags += _etc_binds(allow_network, distinct_uid)
    # /tmp comes before the job's binds: a tmpfs mounted later would hide a work_dir under /tmp.
    flags += ["--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]
    return flags


# Last of the mount options: the sandbox's own root (where bwrap made the mount points) becomes
# read-only, so the work folder and /tmp are the only places a pipeline can write.
_READ_ONLY_ROOT = ("--remount-ro", "/")


def _system_binds() -> list[str]:
    flags = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):  # merged-/usr systems: /lib -> usr/lib
            flags += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            flags += ["--ro-bind", path, path]
    return flags


def _etc_binds(allow_network: bool, distinct_uid: bool) -> list[str]:
    """The parts of /etc the child gets, with a passwd and group that name only its own user."""
    flags = []
    for path in (*_ETC_ALWAYS, *(_ETC_NETWORK if allow_network else ())):
        if os.path.lexists(path):
            # A bind follows a symlink to its target (resolv.conf -> /run/...), so the target is
            # what appears; a dangling link is skipped by --ro-bind-try.
            flags += ["--ro-bind-try", path, path]
    accounts = _account_files(_NOBODY_ID if distinct_uid else os.getuid(),
                              _NOBODY_ID if distinct_uid else os.getgid())
    for name, path in accounts.items():
        flags += ["--ro-bind", path, f"/etc/{name}"]
    return flags


def _account_files(uid: int, gid: int) -> dict[str, str]:
    """passwd and group files naming root, nobody and the sandbox's own user (getpass, ~ lookups)."""
    users = {0: ("root", 0), _NOBODY_ID: ("nobody", _NOBODY_ID)}
    users.setdefault(uid, ("pipeline", gid))
    groups = {0: "root", _NOBODY_ID: "nogroup"}
    groups.setdefault(gid, "pipeline")
    passwd = "".join(f"{name}:x:{user_id}:{group_id}:{name}:/nonexistent:/usr/sbin/nologin\n"
                     for user_id, (name, group_id) in sorted(users.items()))
    group = "".join(f"{name}:x:{group_id}:\n" for group_id, name in sorted(groups.items()))
    return {"passwd": _support_file("passwd", passwd), "group": _support_file("group", group)}


def _support_file(name: str, content: str) -> str:
    """A file of this process's private support folder holding `content` (recreated if cleaned away)."""
    path = os.path.join(_support_folder(os.getpid()), name)
    try:
        with open(path) as existing:
            if existing.read() == content:
                return path
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    staging = f"{path}.{os.getpid()}.tmp"
    with open(staging, "w") as handle:
        handle.write(content)
    os.chmod(staging, 0o444)
    os.replace(staging, path)
    return path


@functools.cache
def _support_folder(pid: int) -> str:
    # One per process (keyed by pid): a forked process must not remove its parent's at exit.
    _remove_folders_of_dead_processes()
    folder = tempfile.mkdtemp(prefix=f"{_SUPPORT_PREFIX}{pid}-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


_SUPPORT_PREFIX = "mlopen-sandbox-"


def _remove_folders_of_dead_processes() -> None:
    """Processes killed with SIGKILL never ran their atexit: drop their (tiny) support folders."""
    root = tempfile.gettempdir()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(_SUPPORT_PREFIX):].split("-", 1)[0]
        if not entry.name.startswith(_SUPPORT_PREFIX) or not pid.isdigit() or _process_exists(int(pid)):
            continue
        try:
            if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid():
                shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            pass


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
