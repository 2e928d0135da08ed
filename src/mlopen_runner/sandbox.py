"""Where pipeline code runs: inside bubblewrap, or (only when allowed) as a plain process.

MLOPEN_SANDBOX picks the mode, told to this module by configure() (the worker does it at start):
- "bubblewrap": every pipeline process is sandboxed; if bwrap cannot create the sandbox here,
  require() and every launch raise SandboxUnavailable: the worker refuses to start (fail closed).
- "auto": sandboxed where bwrap works, a plain process elsewhere (development); the status says so.
- "none": never sandboxed (trusted authors only).

The probe runs once per process: the very flags a pipeline gets (seccomp filter included), first
with a distinct uid, then without. Inside the sandbox everything is read-only but the folders a
launch names as writable; /tmp is one of them, on disk, so it counts against the run's disk
budget and is gone with its folder. Of /etc only what a Python program needs is there: bwrap
started by root maps the sandbox's uid to root outside, so a bound /etc/shadow would be readable.
A seccomp filter (mlopen_runner.seccomp) denies what no pipeline needs (ptrace, new namespaces,
mount, keyctl, bpf, ...), the sandbox can create no user namespace of its own, and every
capability is dropped.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlopen_runner import cgroups, seccomp, untrusted
from mlopen_runner.job import Job

MODES = ("auto", "bubblewrap", "none")
# Inside a run's writable folder: the host side of the sandbox's /tmp.
TMP_DIR_NAME = ".tmp"

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of /etc a Python program (numpy, pandas, scikit-learn, plotly, requests) reads: the loader
# cache, time zone, TLS trust store (not /etc/ssl/private), the symlinks of Debian's alternatives
# (libblas.so.3 and friends point there), MIME types and fonts.
_ETC_ALWAYS = (
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/alternatives",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/pki/tls/certs",
    "/etc/pki/ca-trust/extracted",
    "/etc/mime.types",
    "/etc/fonts",
)
# Name resolution, only for pipelines allowed on the network.
_ETC_NETWORK = (
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/protocols",
    "/etc/services",
)
_NOBODY_ID = 65534
_NOBODY = ("--uid", str(_NOBODY_ID), "--gid", str(_NOBODY_ID))
_PROBE_TIMEOUT_S = 10

_mode = os.environ.get("MLOPEN_SANDBOX", "auto")


class SandboxUnavailable(RuntimeError):
    """MLOPEN_SANDBOX=bubblewrap, and bubblewrap cannot create the sandbox on this host."""


@dataclass(frozen=True)
class _Probe:
    kind: str  # "bubblewrap" | "process"
    reason: str
    bwrap: str = ""
    distinct_uid: bool = False


@dataclass
class Launch:
    """A command ready to start: `argv`, the descriptors it needs (the seccomp filter), its process cap."""

    argv: list[str]
    sandboxed: bool
    pass_fds: tuple[int, ...] = field(default=())
    max_processes: int | None = None
    group: cgroups.PidsGroup | None = None

    def popen(self, *, pass_fds: tuple[int, ...] = (), **options: Any) -> subprocess.Popen[bytes]:
        """Start the command with Popen `options` (stdin is /dev/null); then close our copies of its
        descriptors. Sandboxed with a process cap, it starts in a pids cgroup of its own where the
        host allows one (mlopen_runner.cgroups); release() removes that once its processes are gone."""
        fds = (*pass_fds, *self.pass_fds)
        try:
            group = cgroups.create(self.max_processes) if self.sandboxed and self.max_processes else None
            if group is None:
                return subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, pass_fds=fds, **options)
            return self._popen_in(group, fds, options)
        finally:
            self.close()

    def _popen_in(
        self, group: cgroups.PidsGroup, fds: tuple[int, ...], options: dict[str, Any]
    ) -> subprocess.Popen[bytes]:
        gate_read, gate_write = os.pipe()
        try:
            process = subprocess.Popen(cgroups.gated(self.argv), stdin=gate_read, pass_fds=fds, **options)
        except BaseException:
            os.close(gate_write)
            group.remove()
            raise
        finally:
            os.close(gate_read)
        try:
            group.add(process.pid)
        except OSError:
            process.kill()
            process.wait()
            group.remove()
            raise
        finally:
            try:
                os.write(gate_write, b"go\n")  # through the gate: the command starts, inside the group
            finally:
                os.close(gate_write)
        self.group = group
        return process

    def close(self) -> None:
        """Close our copies of pass_fds once the process has started (or failed to)."""
        for fd in self.pass_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.pass_fds = ()

    def release(self) -> None:
        """After the process tree is gone: remove its pids group."""
        if self.group is not None:
            self.group.remove()
            self.group = None


def configure(mode: str) -> None:
    """Set this process's sandbox mode (one of MODES)."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"MLOPEN_SANDBOX must be one of {', '.join(MODES)}, not {mode!r}")
    _mode = mode


def mode() -> str:
    return _mode


def sandbox_status() -> dict[str, str]:
    """{"kind": "bubblewrap" | "process", "reason": why, "mode": the configured mode}."""
    if _mode == "none":
        return {"kind": "process", "reason": "MLOPEN_SANDBOX=none: pipelines run unsandboxed", "mode": _mode}
    probe = _probe()
    status = {"kind": probe.kind, "reason": probe.reason, "mode": _mode}
    if probe.kind == "bubblewrap":
        # Which cap holds a run's process count (RLIMIT_NPROC does nothing for a worker run as root).
        status["process_limit"] = "pids cgroup" if cgroups.available() else "RLIMIT_NPROC"
    return status


def require() -> None:
    """Raise SandboxUnavailable, saying how to fix it, when the mode asks for a sandbox this host cannot make."""
    _active_probe()


def active() -> bool:
    """Whether the next launch is sandboxed (raises SandboxUnavailable as require() does)."""
    return _active_probe() is not None


def _active_probe() -> _Probe | None:
    if _mode == "none":
        return None
    probe = _probe()
    if probe.kind == "bubblewrap":
        return probe
    if _mode == "bubblewrap":
        raise SandboxUnavailable(
            f"MLOPEN_SANDBOX=bubblewrap, but the sandbox cannot be created here ({probe.reason}). Install "
            "bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) on a kernel that allows user namespaces, "
            "or set MLOPEN_SANDBOX=none to run pipelines unsandboxed (only for authors you trust)."
        )
    return None


def wrap_command(command: list[str], job: Job, python: str, runner_paths: Iterable[str]) -> Launch:
    """`command` as the sandbox runs a pipeline process for `job`; `runner_paths` are on its PYTHONPATH.

    The job's folder is the only writable place; its TMP_DIR_NAME folder is the sandbox's /tmp.
    """
    readable = [
        *python_prefixes(python),
        *runner_paths,
        os.path.dirname(job.control_path),
        *job.data_files(),
        *([job.model_path] if job.model_path else []),
        *job.readonly_paths,
    ]
    return isolate(
        command,
        readable=readable,
        writable=[job.work_dir],
        tmp_dir=tmp_dir(job.work_dir),
        allow_network=job.allow_network,
        chdir=job.work_dir,
        max_processes=job.max_processes,
    )


def tmp_dir(work_dir: str) -> str:
    return os.path.join(work_dir, TMP_DIR_NAME)


def isolate(
    command: list[str],
    *,
    readable: Iterable[str],
    writable: Iterable[str],
    tmp_dir: str,
    allow_network: bool,
    chdir: str,
    max_processes: int | None = None,
) -> Launch:
    """`command` in a sandbox that can read `readable`, write `writable` and `tmp_dir` (its /tmp).

    Unsandboxed (mode "none", or "auto" where bwrap does not work) the command is returned as it is.
    """
    probe = _active_probe()
    untrusted.fresh_folder(tmp_dir)  # a link left there must not become the sandbox's /tmp
    if probe is None:
        return Launch(list(command), sandboxed=False)
    filter_fd = seccomp.filter_fd()
    argv = [
        probe.bwrap,
        *_isolation_flags(allow_network, probe.distinct_uid),
        # /tmp comes before the other binds: a mount there later would hide those under /tmp.
        "--bind",
        tmp_dir,
        "/tmp",
        *_ro_binds(readable),
        *_rw_binds(writable),
        *_READ_ONLY_ROOT,
        "--seccomp",
        str(filter_fd),
        "--chdir",
        chdir,
        "--",
        *command,
    ]
    return Launch(argv, sandboxed=True, pass_fds=(filter_fd,), max_processes=max_processes)


def signal_from_exit_status(returncode: int) -> int | None:
    """The signal that ended the child, if one did.

    Popen reports it as a negative status; bwrap exits with 128 + the signal of its child, so under
    bubblewrap an os._exit(137) would read as SIGKILL (the pipeline's own exit() is reported in
    error.json first).
    """
    if returncode < 0:
        return -returncode
    if _mode != "none" and _probe().kind == "bubblewrap" and 128 < returncode < 128 + 65:
        return returncode - 128
    return None


@functools.cache
def _probe() -> _Probe:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return _Probe("process", "bwrap is not installed")
    try:
        filter_bytes = seccomp.filter_bytes()
    except seccomp.SeccompUnavailable as exc:
        return _Probe("process", f"bwrap is installed but no seccomp filter can be built: {exc}")
    failure = ""
    for distinct_uid in (True, False):
        failure = _try_bwrap([bwrap, *_isolation_flags(False, distinct_uid), *_READ_ONLY_ROOT], filter_bytes)
        if not failure:
            uid_note = "as uid 65534" if distinct_uid else "without a distinct uid (--uid is refused here)"
            return _Probe("bubblewrap", f"bwrap works {uid_note}", bwrap, distinct_uid)
    return _Probe("process", f"bwrap is installed but cannot create a sandbox here: {failure}")


def _try_bwrap(command: list[str], filter_bytes: bytes) -> str:
    """'' when `command ... true` succeeds under the seccomp filter, otherwise what went wrong."""
    filter_fd = seccomp.fd_holding(filter_bytes)
    try:
        completed = subprocess.run(
            [*command, "--seccomp", str(filter_fd), "true"],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            pass_fds=(filter_fd,),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    finally:
        os.close(filter_fd)
    return "" if completed.returncode == 0 else (completed.stderr.strip() or f"exit status {completed.returncode}")


def _isolation_flags(allow_network: bool, distinct_uid: bool) -> list[str]:
    # --unshare-user (not just --unshare-all's "try") so that --disable-userns can forbid the
    # sandbox a user namespace of its own; --cap-drop ALL matters when the worker runs as root.
    flags = [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]
    if allow_network:
        flags.append("--share-net")
    if distinct_uid:
        flags += _NOBODY
    flags += _system_binds()
    flags += _etc_binds(allow_network, distinct_uid)
    flags += ["--proc", "/proc", "--dev", "/dev"]
    return flags


# Last of the mount options: the sandbox's own root (where bwrap made the mount points) becomes
# read-only, so the writable folders are the only places a pipeline can write.
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
    accounts = _account_files(_NOBODY_ID if distinct_uid else os.getuid(), _NOBODY_ID if distinct_uid else os.getgid())
    for name, path in accounts.items():
        flags += ["--ro-bind", path, f"/etc/{name}"]
    return flags


def _account_files(uid: int, gid: int) -> dict[str, str]:
    """passwd and group files naming root, nobody and the sandbox's own user (getpass, ~ lookups)."""
    users = {0: ("root", 0), _NOBODY_ID: ("nobody", _NOBODY_ID)}
    users.setdefault(uid, ("pipeline", gid))
    groups = {0: "root", _NOBODY_ID: "nogroup"}
    groups.setdefault(gid, "pipeline")
    passwd = "".join(
        f"{name}:x:{user_id}:{group_id}:{name}:/nonexistent:/usr/sbin/nologin\n"
        for user_id, (name, group_id) in sorted(users.items())
    )
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
        pid = entry.name[len(_SUPPORT_PREFIX) :].split("-", 1)[0]
        if not entry.name.startswith(_SUPPORT_PREFIX) or not pid.isdigit() or cgroups.process_exists(int(pid)):
            continue
        try:
            if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid():
                shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            pass


def _ro_binds(paths: Iterable[str]) -> list[str]:
    # --ro-bind-try: a missing input reaches the pipeline as FileNotFoundError, as it would
    # without the sandbox, instead of bwrap refusing to start.
    flags = []
    for path in dict.fromkeys(os.path.abspath(path) for path in paths):
        flags += ["--ro-bind-try", path, path]
    return flags


def _rw_binds(paths: Iterable[str]) -> list[str]:
    flags = []
    for path in dict.fromkeys(os.path.abspath(path) for path in paths):
        flags += ["--bind", path, path]
    return flags


def python_prefixes(python: str) -> list[str]:
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
