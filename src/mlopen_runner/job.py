"""What the parent asks the child to do (Job) and what came of it (Outcome).

A Job travels to the child as `job.json` in its work folder, so it holds only JSON values.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("train", "run", "params")

# Files the child leaves in work_dir for the parent to collect.
JOB_FILE = "job.json"
RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
ERROR_FILE = "error.json"
MODEL_FILE = "model.pkl"
# What model.pkl holds, by name only ({"label", "models": [names], "args": [names]}): the parent
# reads this and never unpickles model.pkl.
MODEL_MANIFEST_FILE = "model.json"
OUTPUT_FILES = (RESULT_FILE, PARAMS_FILE, ERROR_FILE, MODEL_FILE, MODEL_MANIFEST_FILE)

# The child finds the write end of the events pipe (progress, metrics) under this name.
EVENTS_FD_VARIABLE = "MLOPEN_EVENTS_FD"

MB = 1024 * 1024


@dataclass
class Job:
    kind: str
    control_path: str
    work_dir: str
    input: dict[str, str] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    model_path: str | None = None
    timeout_s: float | None = None
    memory_mb: int | None = None
    max_log_bytes: int = 1 * MB
    max_result_bytes: int = 50 * MB
    python: str | None = None
    allow_network: bool = False
    extra_pythonpath: list[str] = field(default_factory=list)
    readonly_paths: list[str] = field(default_factory=list)
    # File parameters, {name: {"path", "name"}}: made by the platform from datasets the user may
    # use, never from a value in `params`, so nothing a pipeline declares becomes a mount.
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    # One budget for the job's folder and its /tmp; past it the run fails with the limit named.
    disk_mb: int | None = None
    # Processes and threads the sandbox may hold at once (RLIMIT_NPROC, which counts per user
    # namespace, so only under bubblewrap).
    max_processes: int | None = None
    # Images in a run's result: how many are kept, and how big each may be; the rest are dropped
    # with a warning (mlopen_runner.images).
    max_images: int = 50
    max_image_bytes: int = 10 * MB

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Job kind must be one of {', '.join(KINDS)}, not {self.kind!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls(**json.loads(text))

    def data_files(self) -> list[str]:
        """Paths of the dataset files the pipeline reads: the input and the file params."""
        paths = [self.input["path"]] if self.input else []
        return paths + [ref["path"] for ref in self.files.values()]


def memory_limit_message(memory_mb: int) -> str:
    """Said the same way whether the parent's RSS watch or a MemoryError in the child caught it."""
    return f"Run exceeded the memory limit of {memory_mb} MB"


def disk_limit_message(disk_mb: int) -> str:
    """Said the same way whether the parent's disk watch or a write refused in the child caught it."""
    return f"Run exceeded the disk limit of {disk_mb} MB (MLOPEN_RUN_DISK_MB): its folder and /tmp together"


# A run whose process failed without a word, on a disk with less free than this, is told the disk
# is full: a write that fails with ENOSPC rarely leaves more behind than one block or a short write.
DISK_FULL_MARGIN_BYTES = 1 * MB
# errno values that mean the disk (or the host's disk quota for this user) has no room left.
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` is a write refused because the disk has no room left."""
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS


def free_bytes(path: str) -> int | None:
    """Free space for unprivileged writers on the disk holding `path` (its nearest existing folder
    if it is gone or not made yet); None when even that cannot be measured."""
    folder = os.path.abspath(path)
    while True:
        try:
            status = os.statvfs(folder)
        except OSError:
            parent = os.path.dirname(folder)
            if parent == folder:
                return None
            folder = parent
            continue
        return status.f_bavail * status.f_frsize


def disk_nearly_full(path: str) -> bool:
    free = free_bytes(path)
    return free is not None and free < DISK_FULL_MARGIN_BYTES


def disk_full_message(path: str) -> str:
    """Said the same way by the child, the parent and the worker: the host's disk is full, not the
    run's own budget (that is disk_limit_message)."""
    free = free_bytes(path)
    room = "free space unknown" if free is None else f"{free / MB:.1f}".removesuffix(".0") + " MB free"
    return f"No space left on device on the disk holding {path}: {room}"


@dataclass
class Outcome:
    status: str  # "succeeded" | "failed" | "cancelled"
    error: str | None = None
    exit_code: int | None = None
    duration_s: float = 0.0
    peak_rss_mb: float = 0.0
    log_truncated_bytes: int = 0
    result: dict[str, Any] | None = None
    model_path: str | None = None
    model_manifest: dict[str, Any] | None = None  # {"label": str, "models": [str], "args": [str]}
    params: dict[str, Any] | None = None
    # A run's images, copied out of its folder and checked: [{"path", "name", "type"}], "type" one
    # of "png", "jpeg", "svg". The files are the parent's own, beside the job's folder; the caller
    # removes them (private_images_path) once stored.
    images: list[dict[str, str]] = field(default_factory=list)
