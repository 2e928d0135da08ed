"""Runtimes: the named, locked package sets pipelines run on, instead of the platform's own virtualenv.

A runtime is a folder holding a ``requirements.txt`` lock (``uv pip compile --generate-hashes``,
pinned for this Python on linux x86_64) and the ``requirements.in`` it was compiled from: those
shipped with mlopen in ``src/mlopen/runtimes/<name>/``, an admin's own in MLOPEN_RUNTIMES_DIR. A
pipeline version records the Runtime row (name and digest) it was created with, and the row keeps
the lock's text, so a newer mlopen shipping a newer lock under the same name never changes what an
existing version runs on: its venv stays addressable by digest (MLOPEN_HOME/runtimes/<digest>) and
any host can build it again. Builds run uv inside the build sandbox (environments.run_uv), install
exactly the lock (no resolution, hashes checked) from uv's cache, and work offline once built.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import shutil
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.dispatch import Signal

from mlopen.core import prepared
from mlopen.pipelines import environments
from mlopen.pipelines.control import PipelineRejected
from mlopen.pipelines.interpreters import describe_interpreter
from mlopen.pipelines.models import PipelineVersion, Runtime

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent.parent / "runtimes"
LOCK_FILENAME = "requirements.txt"
READY_MARKER = environments.READY_MARKER
# The lock is installed in this many uv calls, so a build reports its progress between them; uv
# downloads the packages of one call in parallel.
PROGRESS_STEPS = 6

Progress = Callable[[float, str], None]
# Sent with ``runtime_id`` when a runtime's build ended (ready or failed): runs waiting on it go on
# (mlopen.runs listens; pipelines imports no runs).
settled = Signal()


def folders() -> dict[str, Path]:
    """{name: folder} of every known runtime; an admin's runtime of a shipped name replaces it."""
    found: dict[str, Path] = {}
    for root in (SHIPPED, settings.MLOPEN_RUNTIMES_DIR):
        if root is None or not Path(root).is_dir():
            continue
        for folder in sorted(Path(root).iterdir()):
            if (folder / LOCK_FILENAME).is_file():
                found[folder.name] = folder
    return found


def known() -> list[str]:
    return sorted(folders())


def digest_of(lock: str) -> str:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return hashlib.sha256(f"python{python}\n{lock}".encode()).hexdigest()


def lock_of(name: str) -> str:
    """The current lock of the runtime called ``name``; refused (400 at upload) when none is."""
    folder = folders().get(name)
    if folder is None:
        raise PipelineRejected(
            f"Unknown runtime {name!r}; the known runtimes are: {', '.join(known()) or 'none'}.", field="runtime"
        )
    return (folder / LOCK_FILENAME).read_text()


def current(name: str = "") -> Runtime:
    """The Runtime row of ``name``'s current lock (the default runtime's when empty), made if new.

    A lock already built on this host is ready at once; otherwise it is "building" until a worker
    builds it (builds.request_runtime_build).
    """
    name = name or settings.MLOPEN_DEFAULT_RUNTIME
    lock = lock_of(name)
    digest = digest_of(lock)
    build_status = Runtime.Status.READY if built_here(digest) else Runtime.Status.BUILDING
    runtime, _created = Runtime.objects.get_or_create(
        digest=digest, defaults={"name": name, "lock": lock, "build_status": build_status}
    )
    return runtime


def of_version(version: PipelineVersion) -> Runtime:
    """The runtime a version runs on; rows made outside an upload (no runtime) take the default."""
    return version.runtime if version.runtime_id else current()


def waiting_on(version: PipelineVersion) -> Runtime | None:
    """The version's runtime while its build has not succeeded (a run of it waits), else None."""
    if not version.runtime_id:
        return None
    if PipelineVersion.runtime.is_cached(version):
        status = version.runtime.build_status
    else:  # the status alone: the row also carries the lock text (75 KB for the default runtime)
        status = _RUNTIME_STATUS.first_value(runtime_id=version.runtime_id)
    if status is None or status == Runtime.Status.READY:
        return None
    return version.runtime


def build_failed(version: PipelineVersion) -> bool:
    """Whether the version's runtime failed to build here last time (one small query)."""
    return bool(version.runtime_id) and _FAILED_RUNTIME.first_value(runtime_id=version.runtime_id) is not None


# Every queued run's detail asks (the answer to a POST that does not wait included).
_RUNTIME_STATUS = prepared.CompiledRows(
    lambda runtime_id: Runtime.objects.filter(pk=runtime_id).values_list("build_status")[:1],
    runtime_id=-2_000_000_123,
)
# Every submit asks: compiled once (mlopen.core.prepared).
_FAILED_RUNTIME = prepared.CompiledRows(
    lambda runtime_id: Runtime.objects.filter(pk=runtime_id, build_status=Runtime.Status.FAILED).values_list("pk")[:1],
    runtime_id=-2_000_000_123,
)


def root() -> Path:
    return environments.runtimes_root()


def venv_path(digest: str) -> Path:
    return environments.runtime_venv(digest)


def python_of(digest: str) -> Path:
    return venv_path(digest) / "bin" / "python"


def built_here(digest: str) -> bool:
    return (venv_path(digest) / READY_MARKER).exists() and python_of(digest).exists()


@contextmanager
def _build_lock(digest: str):
    root().mkdir(parents=True, exist_ok=True)
    with open(root() / f"{digest[:24]}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_built(digest: str, lock: str, progress: Progress | None = None) -> tuple[Path, str]:
    """Build the runtime venv of this lock on this host unless it is there; return (python, build log).

    Concurrent builds of one lock on a host wait for each other; the later finds it ready.
    """
    python, target = python_of(digest), venv_path(digest)
    if built_here(digest):  # every run asks: no lock file taken once the venv is there
        return python, "runtime already built\n"
    with _build_lock(digest):
        if built_here(digest):
            return python, "runtime already built\n"
        shutil.rmtree(target, ignore_errors=True)
        scratch = root() / f"{digest[:24]}.build"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        batches = _batches(split_lock(lock), PROGRESS_STEPS)
        steps = [["venv", "--python", sys.executable, str(target)]]
        for number, batch in enumerate(batches):
            batch_file = scratch / f"lock-{number}.txt"
            batch_file.write_text("".join(batch))
            steps.append(environments.lock_install_step(python, batch_file))
        total = sum(len(batch) for batch in batches)

        def report(done_steps: int) -> None:
            if progress is not None:
                installed = sum(len(batch) for batch in batches[: done_steps - 1])
                progress(installed / total if total else 1.0, f"installed {installed} of {total} packages")

        readable = [str(scratch / f"lock-{number}.txt") for number in range(len(batches))]
        try:
            build_log = environments.run_uv(steps, target, readable, scratch / "sandbox", after_each=report)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        (target / READY_MARKER).write_text(digest)
        return python, build_log


def split_lock(lock: str) -> list[str]:
    """The lock's requirements, each with its continuation lines (hashes) and without comments."""
    entries: list[str] = []
    for line in lock.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[:1].isspace() and entries:  # "    --hash=sha256:..." continues the requirement above
            entries[-1] += line.rstrip() + "\n"
        else:
            entries.append(line.rstrip() + "\n")
    return entries


def _batches(entries: list[str], count: int) -> list[list[str]]:
    size = max(1, math.ceil(len(entries) / count))
    return [entries[start : start + size] for start in range(0, len(entries), size)]


def interpreter_for(version: PipelineVersion) -> tuple[str, list[str], dict]:
    """(python, extra PYTHONPATH, the environment as the run records it) for a run of ``version``:
    its runtime's venv, or its own environment layered on that runtime when it has requirements."""
    runtime = of_version(version)
    # The lock (long text) is read from the database only when this host has to build it.
    python = python_of(runtime.digest) if built_here(runtime.digest) else ensure_built(runtime.digest, runtime.lock)[0]
    if version.requirements:
        env_hash = version.env_hash or environments.requirements_hash(version.requirements, runtime.digest)
        python, _log = environments.ensure_environment(env_hash, version.requirements, runtime.lock, runtime.digest)
    record = {"runtime": runtime.name, "digest": runtime.digest, **describe_interpreter(python)}
    return str(python), [str(environments.sdk_overlay())], record


def build_environment(version_id: int) -> str:
    """The background build job of a version's environment, on a host that may not have its runtime.

    The runtime comes first: the environment then starts as a copy of it (a few seconds) instead of
    a second install of the same lock, and the host's runs of the version need the runtime anyway
    (interpreter_for). A runtime that does not build here is left to the environment's own build,
    which installs the lock itself and records why it failed in the version's env_log.
    """
    version = PipelineVersion.objects.filter(pk=version_id).select_related("runtime").first()
    needs_base = (
        version is not None
        and version.requirements
        and version.env_status == PipelineVersion.EnvStatus.BUILDING
        and version.runtime_id
        and version.runtime.build_status != Runtime.Status.FAILED
        and not built_here(version.runtime.digest)
    )
    if needs_base:
        try:
            ensure_built(version.runtime.digest, version.runtime.lock)
        except (environments.EnvironmentFailed, environments.subprocess.TimeoutExpired) as exc:
            log.warning("runtime %s did not build on this host before an environment on it: %s", version.runtime, exc)
    return environments.build_for_version(version_id)


def build(runtime_id: int) -> str:
    """The background build job of a runtime: build it on this host with its progress on the row,
    then mark it ready (or failed, with uv's output in build_log). Idempotent: a duplicate message
    finds it built."""
    runtime = Runtime.objects.filter(pk=runtime_id).first()
    if runtime is None:
        return "skipped"
    this = Runtime.objects.filter(pk=runtime_id)

    def progress(fraction: float, message: str) -> None:
        this.update(progress_fraction=fraction, progress_message=message[:200])

    try:
        _python, build_log = ensure_built(runtime.digest, runtime.lock, progress)
        outcome = {"build_status": Runtime.Status.READY, "progress_fraction": 1.0, "progress_message": "built"}
    except environments.EnvironmentFailed as exc:
        build_log = str(exc)
        outcome = {"build_status": Runtime.Status.FAILED}
    except environments.subprocess.TimeoutExpired:
        build_log = f"Building the runtime took longer than {environments.BUILD_TIMEOUT_SECONDS} s."
        outcome = {"build_status": Runtime.Status.FAILED}
    this.update(build_log=build_log[-20000:], **outcome)
    settled.send(sender=Runtime, runtime_id=runtime_id)
    return outcome["build_status"]
