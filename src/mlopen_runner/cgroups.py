"""A cap on the processes and threads of one sandbox, with the kernel's pids controller.

RLIMIT_NPROC (set in the child too) counts per user, and not at all for a worker running as root:
bwrap started by root maps the sandbox to root outside, which the limit exempts. A pids cgroup
counts exactly the processes put in it and what they start, whoever they run as. Where the
worker may create one (cgroup v2 with the pids controller delegated to it, or v1's pids
hierarchy), each pipeline process tree gets its own, created before it starts and removed after.
Elsewhere there is none, and the status says so.

The process must be in the group before it starts anything: the command is started behind a
gate (a shell that waits for one line on its standard input, then execs the command), moved into
the group, and only then let through.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import time

_PREFIX = "mlopen-run-"
_REMOVE_TRIES = 50
_REMOVE_PAUSE_S = 0.01
_counter = itertools.count(1)


class PidsGroup:
    """One cgroup holding at most `max_pids` tasks."""

    def __init__(self, path: str) -> None:
        self.path = path

    def add(self, pid: int) -> None:
        with open(os.path.join(self.path, "cgroup.procs"), "w") as procs:
            procs.write(str(pid))

    def remove(self) -> None:
        """Remove the group once its processes are gone (killed ones may take a moment to be reaped)."""
        for _ in range(_REMOVE_TRIES):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:  # EBUSY: a task not yet reaped
                time.sleep(_REMOVE_PAUSE_S)


def create(max_pids: int) -> PidsGroup | None:
    """A new group capped at `max_pids`, or None where this process cannot create one."""
    parent = _parent()
    if parent is None:
        return None
    path = os.path.join(parent, f"{_PREFIX}{os.getpid()}-{next(_counter)}")
    try:
        os.mkdir(path)
        with open(os.path.join(path, "pids.max"), "w") as limit:
            limit.write(str(max_pids))
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return None
    return PidsGroup(path)


def available() -> bool:
    return _parent() is not None


# Gate: `sh -c GATE mlopen-gate COMMAND...` reads one line, then becomes COMMAND (stdin /dev/null).
GATE_SCRIPT = 'read -r _ && exec "$@" </dev/null'


def gated(argv: list[str]) -> list[str]:
    return ["/bin/sh", "-c", GATE_SCRIPT, "mlopen-gate", *argv]


@functools.cache
def _parent() -> str | None:
    """The folder where this process may create pids groups (its own group), or None."""
    for candidate in (_v2_own_group(), _v1_own_group()):
        if candidate and _can_create_in(candidate):
            _remove_groups_of_dead_workers(candidate)
            return candidate
    return None


def _own_cgroup_lines() -> list[tuple[str, str, str]]:
    try:
        with open("/proc/self/cgroup") as lines:
            rows = [line.rstrip("\n").split(":", 2) for line in lines if line.count(":") >= 2]
            return [(row[0], row[1], row[2]) for row in rows]
    except OSError:
        return []


def _v2_own_group() -> str | None:
    root = "/sys/fs/cgroup"
    try:
        with open(os.path.join(root, "cgroup.controllers")) as available:
            if "pids" not in available.read().split():
                return None
    except OSError:
        return None
    for hierarchy, controllers, path in _own_cgroup_lines():
        if hierarchy == "0" and controllers == "":
            folder = os.path.join(root, path.lstrip("/"))
            try:
                with open(os.path.join(folder, "cgroup.subtree_control")) as enabled:
                    if "pids" in enabled.read().split():
                        return folder
            except OSError:
                return None
    return None


def _v1_own_group() -> str | None:
    root = "/sys/fs/cgroup/pids"
    if not os.path.isdir(root):
        return None
    for _hierarchy, controllers, path in _own_cgroup_lines():
        if "pids" in controllers.split(","):
            return os.path.join(root, path.lstrip("/"))
    return None


def _can_create_in(folder: str) -> bool:
    probe = os.path.join(folder, f"{_PREFIX}{os.getpid()}-probe")
    try:
        os.mkdir(probe)
    except FileExistsError:
        pass
    except OSError:
        return False
    ok = os.path.exists(os.path.join(probe, "pids.max"))
    with contextlib.suppress(OSError):
        os.rmdir(probe)
    return ok


def _remove_groups_of_dead_workers(folder: str) -> None:
    """A worker killed with SIGKILL left its (empty, since its sandboxes died with it) groups behind."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            owner = entry.name[len(_PREFIX) :].split("-", 1)[0]
            if entry.name.startswith(_PREFIX) and owner.isdigit() and not process_exists(int(owner)):
                with contextlib.suppress(OSError):
                    os.rmdir(entry.path)


def process_exists(pid: int) -> bool:
    """Whether a process with this pid exists (one of another user's counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
