"""Per-pipeline Python environments built from a requirements.txt uploaded with the pipeline.

An environment is a virtual environment built with uv, named by the hash of its requirements
(and the Python version), so versions that share requirements share one environment. It lives
under MLOPEN_HOME/envs on each worker host: a worker that finds it missing builds it before the
run (uv's cache makes that quick), so hosts need nothing but database, broker and storage.
The platform's pipeline SDK (mlopen_runner + the mlopenapp shim, no Django) is put on the
child's PYTHONPATH from a copy beside the environments.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mlopen.pipelines.models import PipelineVersion
from mlopen_runner.child import die_with_parent

log = logging.getLogger(__name__)
BUILD_TIMEOUT_SECONDS = 900
_REFUSED_MARKERS = ("://", "git+", "hg+", "svn+", "bzr+", "file:")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._ -]+\])?\s*([<>=!~;].*)?$")


class EnvironmentFailed(RuntimeError):
    pass


def check_requirements(raw: bytes) -> str:
    """Return the normalized requirements text, or refuse lines that could fetch arbitrary code."""
    from mlopen.pipelines.services import PipelineRejected

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PipelineRejected("requirements.txt is not UTF-8 text.", field="requirements") from None
    kept = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.split(" #", 1)[0].strip()
        if not stripped or stripped.startswith("#"):
            continue
        problem = None
        if stripped.startswith("-"):
            problem = "options (-e, -r, --index-url, ...) are not allowed"
        elif any(marker in stripped for marker in _REFUSED_MARKERS) or " @ " in stripped or stripped.startswith("@"):
            problem = "URLs, VCS and file references are not allowed; name a package from the index"
        elif stripped.startswith((".", "/", "~")) or "\\" in stripped:
            problem = "local paths are not allowed"
        elif not _NAME.match(stripped):
            problem = "this is not a requirement like 'package==1.2' or 'package>=1.0'"
        if problem:
            raise PipelineRejected(f"requirements.txt line {number} ({stripped[:80]!r}): {problem}.",
                                   field="requirements")
        kept.append(stripped)
    if not kept:
        raise PipelineRejected("requirements.txt names no package.", field="requirements")
    return "\n".join(kept) + "\n"


def requirements_hash(requirements: str) -> str:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return hashlib.sha256(f"python{python}\n{requirements}".encode()).hexdigest()


def envs_root() -> Path:
    return settings.MLOPEN_HOME / "envs"


def env_path(env_hash: str) -> Path:
    return envs_root() / env_hash[:24]


def env_python(env_hash: str) -> Path:
    return env_path(env_hash) / "bin" / "python"


def request_environment(version: PipelineVersion) -> None:
    """Mark the version as building and enqueue its build, once the upload is committed.

    Even when the same requirements were built before, the build job runs: it reads the new control
    file's forms (get_params) inside the environment, which only then makes the version usable.
    It goes to the pipeline's own queue, so a pipeline served only by `--queues gpu` workers is
    still built. A build message the broker loses (or whose worker dies) is sent again by the
    workers' sweep (mlopen.runs.workers.requeue_lost_builds).
    """
    env_hash = requirements_hash(version.requirements)
    status = PipelineVersion.EnvStatus.BUILDING
    PipelineVersion.objects.filter(pk=version.pk).update(env_hash=env_hash, env_status=status,
                                                         env_requested_at=timezone.now(), env_heartbeat_at=None)
    version.env_hash, version.env_status = env_hash, status
    queue = version.pipeline.queue or settings.MLOPEN_DEFAULT_QUEUE
    transaction.on_commit(lambda: send_build(version.pk, queue))


def send_build(version_id: int, queue: str) -> bool:
    """Send the build message; never raises. The version is committed by now, so a broker that is
    down must not fail the upload: the version stays "building" with env_requested_at cleared, and
    the next worker sweep sends it."""
    from mlopen.pipelines.tasks import build_environment

    try:
        build_environment.apply_async(kwargs={"version_id": version_id}, queue=queue)
        return True
    except Exception as exc:  # noqa: BLE001 - whatever the broker raised, the build is recorded and will be sent
        log.warning("the environment build of pipeline version %s could not be sent to the broker (%s: %s); a "
                    "worker will send it once the broker is reachable", version_id, exc.__class__.__name__, exc)
    try:
        PipelineVersion.objects.filter(pk=version_id, env_status=PipelineVersion.EnvStatus.BUILDING).update(
            env_requested_at=None)
    except Exception:  # logged; then it is re-sent after MLOPEN_REQUEUE_SECONDS instead
        log.exception("could not mark the build of pipeline version %s as not sent", version_id)
    return False


@contextmanager
def _build_lock(env_hash: str):
    envs_root().mkdir(parents=True, exist_ok=True)
    with open(envs_root() / f"{env_hash[:24]}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise EnvironmentFailed("uv is not installed; it is needed to build pipeline environments") from None
        return found


def ensure_environment(env_hash: str, requirements: str) -> tuple[Path, str]:
    """Build the environment for these requirements if it is not there yet; return (python, build log)."""
    python = env_python(env_hash)
    marker = env_path(env_hash) / ".mlopen-ready"
    with _build_lock(env_hash):
        if marker.exists() and python.exists():
            return python, "environment already built\n"
        target = env_path(env_hash)
        shutil.rmtree(target, ignore_errors=True)
        requirements_file = envs_root() / f"{env_hash[:24]}.requirements.txt"
        requirements_file.write_text(requirements)
        env = _build_environment_variables()
        build_log = ""
        for argv in ([_uv(), "venv", "--python", sys.executable, str(target)],
                     [_uv(), "pip", "install", "--python", str(python), "-r", str(requirements_file)]):
            # uv dies with this worker: a build re-sent after the worker was killed must not race
            # an orphaned uv still writing into the same folder.
            done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT_SECONDS,
                                  preexec_fn=die_with_parent)  # prctl only: takes no lock a thread could hold
            build_log += f"$ {' '.join(Path(a).name if i == 0 else a for i, a in enumerate(argv))}\n"
            build_log += done.stdout + done.stderr
            if done.returncode != 0:
                shutil.rmtree(target, ignore_errors=True)
                raise EnvironmentFailed(build_log)
        marker.write_text(requirements)
        return python, build_log


def _build_environment_variables() -> dict[str, str]:
    """What uv sees: where to find things and how to reach the index, none of the platform's secrets.

    Installing a package without a wheel runs its build code, so the database URL, the broker's
    password or the secret key must not be in reach.
    """
    passed = {k: v for k, v in os.environ.items()
              if k in _PASSED_TO_UV or k.startswith("UV_") or k.lower().endswith("_proxy")}
    passed.setdefault("PATH", os.defpath)
    passed["UV_CACHE_DIR"] = str(envs_root() / "uv-cache")
    passed["UV_PYTHON_DOWNLOADS"] = "never"  # the platform's own interpreter, never a downloaded one
    return passed


_PASSED_TO_UV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")


def failure_summary(env_log: str, limit: int = 600) -> str:
    """The part of a failed build's log that says why: what the last command printed, minus uv's
    "Using Python ..." chatter."""
    last_command = env_log.rsplit("\n$ ", 1)[-1]
    lines = [line.strip() for line in last_command.splitlines()[1:]
             if line.strip() and not line.startswith(("Using Python", "Using CPython"))]
    text = " ".join(lines) or env_log.strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def sdk_overlay() -> Path:
    """A folder holding copies of mlopen_runner and mlopenapp, importable without Django."""
    import mlopen_runner
    import mlopenapp

    packages = [Path(mlopen_runner.__file__).parent, Path(mlopenapp.__file__).parent]
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted(package.rglob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    overlay = envs_root() / f"sdk-{digest.hexdigest()[:16]}"
    if not overlay.exists():
        staging = overlay.with_name(overlay.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        for package in packages:
            shutil.copytree(package, staging / package.name, ignore=shutil.ignore_patterns("__pycache__"))
        try:
            staging.rename(overlay)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another worker made it first
    return overlay


def interpreter_for(version: PipelineVersion) -> tuple[str, list[str]]:
    python, _log = ensure_environment(version.env_hash or requirements_hash(version.requirements), version.requirements)
    return str(python), [str(sdk_overlay())]


def build_for_version(version_id: int) -> str:
    """The background build job: build the environment, read the control file's forms in it, and
    mark the version ready (or failed, with what went wrong in env_log).

    Idempotent, so a duplicate message (a re-sent build whose first message turns up after all) is
    harmless: a version no longer building is skipped, builds of the same requirements on one host
    wait for each other and the later one finds the environment ready, and only the first build to
    finish decides the version's status.
    """
    version = PipelineVersion.objects.filter(pk=version_id).first()
    if version is None or not version.requirements:
        return "skipped"
    if version.env_status != PipelineVersion.EnvStatus.BUILDING:
        log.info("environment build of pipeline version %s skipped: already %s", version_id, version.env_status)
        return f"skipped ({version.env_status})"
    env_hash = version.env_hash or requirements_hash(version.requirements)
    this = PipelineVersion.objects.filter(pk=version.pk, env_status=PipelineVersion.EnvStatus.BUILDING)
    try:
        python, build_log = ensure_environment(env_hash, version.requirements)
        overlay = sdk_overlay()
    except EnvironmentFailed as exc:
        this.update(env_status=PipelineVersion.EnvStatus.FAILED, env_log=str(exc)[-20000:])
        return "failed"
    except subprocess.TimeoutExpired:
        this.update(env_status=PipelineVersion.EnvStatus.FAILED,
                    env_log=f"Building the environment took longer than {BUILD_TIMEOUT_SECONDS} s.")
        return "failed"
    from mlopen.pipelines.services import PipelineRejected

    try:
        specs = _params_in_environment(version, python, overlay)
    except PipelineRejected as exc:
        this.update(env_status=PipelineVersion.EnvStatus.FAILED,
                    env_log=f"{build_log}\n$ get_params() in this environment\n{exc.message}"[-20000:])
        return "failed"
    this.update(env_status=PipelineVersion.EnvStatus.READY, env_log=build_log[-20000:],
                params_train=specs["train"], params_run=specs["run"])
    return "ready"


def _params_in_environment(version: PipelineVersion, python: Path, overlay: Path) -> dict:
    from mlopen.core import storage
    from mlopen.pipelines.services import evaluate_params

    work_dir = settings.MLOPEN_WORK_DIR / "env-params" / uuid.uuid4().hex
    work_dir.mkdir(parents=True)
    try:
        control = storage.local_folder(version.folder) / version.control_filename  # with its support files
        return evaluate_params(control, work_dir, python=str(python), extra_pythonpath=[str(overlay)])
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
