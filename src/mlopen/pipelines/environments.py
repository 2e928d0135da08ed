"""Per-pipeline Python environments built from a requirements.txt uploaded with the pipeline.

An environment is a virtual environment holding the version's runtime first, then its requirements
installed on top by uv, so a requirement only adds what the runtime lacks and keeps the runtime's
versions unless it asks for others. The runtime part is a copy of the runtime's venv, which the
build job builds on this host first (runtimes.build_environment), with its bytecode compiled already;
where that is missing, the runtime lock installed by uv (exact versions, hash-checked). It is named by the hash of its
requirements, the runtime's digest and the Python version, so versions that share those share one
environment. It lives
under MLOPEN_HOME/envs on each worker host: a worker that finds it missing builds it before the
run (uv's cache makes that quick), so hosts need nothing but database, broker and storage.
The platform's pipeline SDK (mlopen_runner + the mlopenapp shim, no Django) is put on the
child's PYTHONPATH from a copy beside the environments.
"""

from __future__ import annotations

import configparser
import fcntl
import functools
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
from urllib.parse import unquote, urlsplit

from django.conf import settings
from packaging.requirements import InvalidRequirement, Requirement

import mlopen_runner
import mlopenapp
from mlopen.core import storage
from mlopen.pipelines.control import PipelineRejected, evaluate_params
from mlopen.pipelines.models import PipelineVersion
from mlopen_runner import sandbox
from mlopen_runner.child import die_with_parent

log = logging.getLogger(__name__)
BUILD_TIMEOUT_SECONDS = 900
_REFUSED_MARKERS = ("://", "git+", "hg+", "svn+", "bzr+", "file:")
# Names uv (and pip) read as a file to install, not as a package of the index.
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip", ".whl", ".egg")
_EXAMPLE = "name a package of the index instead, like 'package==1.2' or 'package>=1.0'"


class EnvironmentFailed(RuntimeError):
    pass


def check_requirements(raw: bytes) -> str:
    """Return the normalized requirements text, or refuse lines that could fetch arbitrary code.

    Each line must be a plain PEP 508 requirement: a name of the index, optional extras, versions
    and an environment marker. A URL, a path, an option or a name that is really a file
    ("evil-1.0.tar.gz") would make uv install something that is not on the index, from the worker.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PipelineRejected("requirements.txt is not UTF-8 text.", field="requirements") from None
    kept = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.split(" #", 1)[0].strip()
        if not stripped or stripped.startswith("#"):
            continue
        requirement, problem = _parse_requirement(stripped)
        if requirement is None:
            raise PipelineRejected(
                f"requirements.txt line {number} ({stripped[:80]!r}): {problem}.", field="requirements"
            )
        kept.append(str(requirement))
    if not kept:
        raise PipelineRejected("requirements.txt names no package.", field="requirements")
    return "\n".join(kept) + "\n"


def _parse_requirement(line: str) -> tuple[Requirement | None, str]:
    """(the requirement, "") or (None, what is wrong with the line and what to write instead)."""
    if line.startswith("-"):
        return None, f"options (-e, -r, --index-url, ...) are not allowed; {_EXAMPLE}"
    if any(marker in line for marker in _REFUSED_MARKERS) or line.startswith("@"):
        return None, f"URLs, VCS and file references are not allowed; {_EXAMPLE}"
    if line.startswith((".", "/", "~")) or "/" in line or "\\" in line:
        return None, f"local paths are not allowed; {_EXAMPLE}"
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return None, "this is not a requirement like 'package==1.2' or 'package>=1.0'"
    if requirement.url:
        return None, f"URLs, VCS and file references are not allowed; {_EXAMPLE}"
    if requirement.name.lower().endswith(_ARCHIVE_SUFFIXES):
        return None, f"this names a file (an archive or a wheel), not a package; {_EXAMPLE}"
    return requirement, ""


def requirements_hash(requirements: str, runtime_digest: str = "") -> str:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    # Without a runtime the text hashed is what it was before runtimes: those environments keep their names.
    layered = f"runtime {runtime_digest}\n" if runtime_digest else ""
    return hashlib.sha256(f"python{python}\n{layered}{requirements}".encode()).hexdigest()


def envs_root() -> Path:
    return settings.MLOPEN_HOME / "envs"


# A venv holding this file is whole: a runtime's (written by mlopen.pipelines.runtimes) or an
# environment's (below).
READY_MARKER = ".mlopen-ready"


def runtimes_root() -> Path:
    return settings.MLOPEN_HOME / "runtimes"


def runtime_venv(digest: str) -> Path:
    """Where this host builds the runtime of this digest (mlopen.pipelines.runtimes builds it)."""
    return runtimes_root() / digest[:24]


def env_path(env_hash: str) -> Path:
    return envs_root() / env_hash[:24]


def env_python(env_hash: str) -> Path:
    return env_path(env_hash) / "bin" / "python"


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
        from uv import find_uv_bin  # noqa: PLC0415 - optional: uv on PATH does as well

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise EnvironmentFailed("uv is not installed; it is needed to build pipeline environments") from None
        return found


def uv_cache() -> Path:
    """uv's cache for environment and runtime builds only: the one folder builds share, besides their own."""
    return settings.MLOPEN_UV_CACHE_DIR or envs_root() / "uv-cache"


def ensure_environment(
    env_hash: str, requirements: str, base_lock: str = "", base_digest: str = ""
) -> tuple[Path, str]:
    """Build the environment for these requirements (on the runtime ``base_digest`` whose lock is
    ``base_lock``) if it is not there yet; return (python, build log)."""
    python = env_python(env_hash)
    target = env_path(env_hash)
    marker = target / READY_MARKER
    with _build_lock(env_hash):
        if marker.exists() and python.exists():
            return python, "environment already built\n"
        _recheck(requirements)
        shutil.rmtree(target, ignore_errors=True)
        requirements_file = envs_root() / f"{env_hash[:24]}.requirements.txt"
        requirements_file.write_text(requirements)
        scratch = envs_root() / f"{env_hash[:24]}.build"
        shutil.rmtree(scratch, ignore_errors=True)
        readable = [str(requirements_file)]
        build_log = ""
        base = runtime_venv(base_digest) if base_digest else None
        try:
            if base is not None and (base / READY_MARKER).exists():
                build_log = _copy_runtime(base, target)
                steps = []
            else:
                steps = [["venv", "--python", sys.executable, str(target)]]
                if base_lock:
                    lock_file = envs_root() / f"{env_hash[:24]}.runtime.txt"
                    lock_file.write_text(base_lock)
                    steps.append(lock_install_step(python, lock_file))
                    readable.append(str(lock_file))
            steps.append(
                ["pip", "install", "--python", str(python), *_COMPILED, *_only_wheels(), "-r", str(requirements_file)]
            )
            build_log += run_uv(steps, target, readable, scratch)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        marker.write_text(requirements)
        return python, build_log


_VENV_SHEBANG = re.compile(rb"#!/\S*/bin/python[0-9.]*")


def _copy_runtime(base: Path, target: Path) -> str:
    """Copy a runtime's built venv to ``target`` as the start of an environment; return the log line.

    Installing the runtime's lock again took 8-10 s on an idle 2-core host and 20-30 s on a busy
    one, mostly compiling the bytecode of ~17 000 files; with a copy the whole build took 2-7 s, uv
    compiling only what the requirements add. A copy, not hard links: a requirement built from
    source runs its build code in the sandbox with the environment writable, and must not be
    able to change the runtime's files that every other pipeline runs on. The copied bytecode
    stays valid (it is checked against each source's size and modification time, which the copy
    keeps); the scripts in bin/ name the venv they were installed in, and are pointed at this one.
    """

    def platform_files(folder: str, names: list[str]) -> list[str]:
        # The runtime's own ready marker and package list (mlopen.pipelines.interpreters) are not
        # the environment's: it gets its own of each once built and once first run.
        return [name for name in names if name.startswith(".mlopen-")] if Path(folder) == base else []

    shutil.copytree(base, target, symlinks=True, ignore=platform_files)
    scripts = target / "bin"
    if scripts.is_symlink():  # not what uv built: its scripts would be rewritten wherever it points
        raise EnvironmentFailed(
            f"$ copy the runtime's environment ({base.name})\nIts bin/ is a link, not the folder uv built: "
            "an admin should delete the runtime's folder so that it is built again.\n"
        )
    before, after = str(base).encode(), str(target).encode()
    for script in scripts.iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        content = script.read_bytes()
        first, newline, rest = content.partition(b"\n")
        if _VENV_SHEBANG.fullmatch(first):  # a console script: run by this venv's python
            first = b"#!" + after + b"/bin/python"
        pointed = (first + newline + rest).replace(before, after)  # the activate scripts name the venv
        if pointed != content:
            script.write_bytes(pointed)
    return _COPIED_LOG.format(name=base.name)


_COPIED_LOG = "$ copy the runtime's environment ({name}) and install the requirements on it\n"


def _recheck(requirements: str) -> None:
    """Versions uploaded before requirement lines were checked this strictly are checked again here."""
    try:
        check_requirements(requirements.encode())
    except PipelineRejected as exc:
        raise EnvironmentFailed(f"$ check requirements.txt\n{exc.message}\n") from None


# Pipelines see an environment read-only, so Python cannot cache the bytecode of what they import:
# without it every cold run compiled pandas and scikit-learn from source again (1.6 s became 4 s).
_COMPILED = ["--compile-bytecode"]


def _only_wheels() -> list[str]:
    return [] if settings.MLOPEN_BUILD_FROM_SOURCE else ["--only-binary", ":all:"]


def lock_install_step(python: Path, lock_file: Path) -> list[str]:
    """uv's arguments installing exactly a lock's packages: every one is pinned and hashed there,
    so nothing is resolved and nothing else comes in (--no-deps)."""
    return [
        "pip",
        "install",
        "--python",
        str(python),
        "--no-deps",
        "--require-hashes",
        *_COMPILED,
        *_only_wheels(),
        "-r",
        str(lock_file),
    ]


def run_uv(steps: list[list[str]], target: Path, readable_files: list[str], scratch: Path, after_each=None) -> str:
    """Run each step (uv's arguments) as a uv process inside the sandbox; return the build log.

    The sandbox reads uv, the base Python and ``readable_files``; it writes only ``target``, uv's
    build cache and its own /tmp. It starts in an empty folder (also its HOME),
    so no requirement can resolve to a file of the worker's folder, and it sees nothing else of
    MLOPEN_HOME: not the database, the secret key, the storage or the other environments.
    ``after_each(number_of_steps_done)`` is called after each step that succeeded.
    """
    home, tmp = scratch / "home", scratch / "tmp"
    for folder in (target, home, tmp, uv_cache()):
        folder.mkdir(parents=True, exist_ok=True)
    uv = _uv()
    env = _build_environment_variables(home)
    readable = [
        os.path.dirname(uv),
        *sandbox.python_prefixes(sys.executable),
        *readable_files,
        str(home),
        *_local_sources(env),
    ]
    only_wheels = not settings.MLOPEN_BUILD_FROM_SOURCE
    build_log = ""
    for done_steps, step in enumerate(steps, start=1):
        argv = [uv, *step]
        try:
            launch = sandbox.isolate(
                argv,
                readable=readable,
                writable=[str(target), str(uv_cache())],
                tmp_dir=str(tmp),
                allow_network=True,
                chdir=str(home),
            )
        except sandbox.SandboxUnavailable as exc:
            raise EnvironmentFailed(f"{build_log}$ build in the sandbox\n{exc}\n") from None
        try:
            # uv dies with this worker: a build re-sent after the worker was killed must not race
            # an orphaned uv still writing into the same folder.
            done = subprocess.run(
                launch.argv,
                capture_output=True,
                text=True,
                cwd=home,
                timeout=BUILD_TIMEOUT_SECONDS,
                env={**env, "TMPDIR": "/tmp" if launch.sandboxed else str(tmp)},
                pass_fds=launch.pass_fds,
                preexec_fn=die_with_parent,
            )  # prctl only: takes no lock a thread could hold
        finally:
            launch.close()
        build_log += f"$ {' '.join(Path(a).name if i == 0 else a for i, a in enumerate(argv))}\n"
        if done.returncode != 0 and only_wheels and _needs_a_source_build(done.stdout + done.stderr):
            build_log += _ONLY_WHEELS_NOTE + "\n"
        build_log += done.stdout + done.stderr
        if done.returncode != 0:
            raise EnvironmentFailed(build_log)
        if after_each is not None:
            after_each(done_steps)
    return build_log


_ONLY_WHEELS_NOTE = (
    "Only wheels are installed, and a requirement has no wheel for this Python and platform, only a source "
    "distribution (whose build code would run on the worker): require a version that has a wheel, or have an "
    "admin set MLOPEN_BUILD_FROM_SOURCE=true on the workers to build it (inside the build sandbox)."
)


def _needs_a_source_build(output: str) -> bool:
    return "building from source is disabled" in output or "has no usable wheels" in output


def _build_environment_variables(home: Path) -> dict[str, str]:
    """What uv sees: a clean environment with how to reach the index, none of the platform's secrets.

    Installing a package without a wheel runs its build code, so the database URL, the broker's
    password or the secret key must not be in reach. UV_NO_CONFIG: no uv.toml of the host is read;
    the index settings the worker has (for uv, or pip's, which uv does not read) are passed instead.
    """
    passed = {
        k: v
        for k, v in os.environ.items()
        if k in _PASSED_TO_UV or k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    passed.update(_index_settings())
    passed.setdefault("PATH", os.defpath)
    passed.update(
        HOME=str(home),
        UV_CACHE_DIR=str(uv_cache()),
        UV_PYTHON=sys.executable,
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",  # the platform's own interpreter, never a downloaded one
        # In the sandbox the cache and the environment are two mounts: no hard links between them.
        UV_LINK_MODE="copy",
    )
    return passed


_PASSED_TO_UV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "UV_NATIVE_TLS",
    "UV_HTTP_TIMEOUT",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_INDEX_STRATEGY",
    "UV_KEYRING_PROVIDER",
    "UV_INSECURE_HOST",
)
_UV_INDEX = ("UV_INDEX_URL", "UV_DEFAULT_INDEX")


def _index_settings() -> dict[str, str]:
    """pip's index settings as uv's, where uv has none of its own.

    pip's index-url (PIP_INDEX_URL or a pip.conf) becomes uv's default index, its find-links uv's.
    pip's extra-index-url is passed only from PIP_EXTRA_INDEX_URL, not from a pip.conf: uv takes
    a package from the first index that has it, so a partial local mirror named there would hide
    every other version of the packages it holds (pip merges the indexes). UV_EXTRA_INDEX_URL is
    the way to name one.
    """
    pip = _pip_config()
    translated = {}
    index = os.environ.get("PIP_INDEX_URL") or pip.get("index-url")
    if index and not any(os.environ.get(name) for name in _UV_INDEX):
        translated["UV_DEFAULT_INDEX"] = index.split()[0]
    extra = os.environ.get("PIP_EXTRA_INDEX_URL")
    if extra and not os.environ.get("UV_EXTRA_INDEX_URL"):
        translated["UV_EXTRA_INDEX_URL"] = " ".join(extra.split())
    links = os.environ.get("PIP_FIND_LINKS") or pip.get("find-links")
    if links and not os.environ.get("UV_FIND_LINKS"):
        translated["UV_FIND_LINKS"] = ",".join(links.split())  # uv's list is comma-separated
    return translated


def _pip_config() -> dict[str, str]:
    """index-url and find-links as pip reads them from its configuration files (later files win)."""
    user_config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    files = [
        *(Path(d) / "pip" / "pip.conf" for d in (os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":") if d),
        Path("/etc/pip.conf"),
        Path.home() / ".pip" / "pip.conf",
        user_config / "pip" / "pip.conf",
    ]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    found: dict[str, str] = {}
    for path in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            for key in ("index-url", "find-links"):
                if parser.has_option(section, key):
                    found[key] = parser.get(section, key).strip()
    return found


def _local_sources(env: dict[str, str]) -> list[str]:
    """Folders and files on this host the index settings name (file:// indexes, find-links
    folders, the TLS trust store): the sandbox must be able to read them."""
    urls = [
        value.split("=", 1)[1] if "=" in value.split("://", 1)[0] else value  # UV_INDEX: [name=]url
        for name in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL")
        for value in env.get(name, "").split()
    ]
    urls += [value.strip() for value in env.get("UV_FIND_LINKS", "").split(",")]
    paths = [env[name] for name in ("SSL_CERT_FILE", "SSL_CERT_DIR") if env.get(name)]
    for url in urls:
        if url.startswith("file://"):
            paths.append(unquote(urlsplit(url).path))
        elif url and "://" not in url:
            paths.append(os.path.abspath(os.path.expanduser(url)))
    return paths


def failure_summary(env_log: str, limit: int = 600) -> str:
    """The part of a failed build's log that says why: what the last command printed, minus uv's
    "Using Python ..." chatter."""
    last_command = env_log.rsplit("\n$ ", 1)[-1]
    lines = [
        line.strip()
        for line in last_command.splitlines()[1:]
        if line.strip() and not line.startswith(("Using Python", "Using CPython"))
    ]
    text = " ".join(lines) or env_log.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sdk_overlay() -> Path:
    """A folder holding copies of mlopen_runner and mlopenapp, importable without Django."""
    packages = [Path(mlopen_runner.__file__).parent, Path(mlopenapp.__file__).parent]
    overlay = envs_root() / f"sdk-{_sources_digest(tuple(packages))}"
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


@functools.cache
def _sources_digest(packages: tuple[Path, ...]) -> str:
    # Once per process: every run asks for the overlay, and hashing the sources took 2 ms of each
    # warm run. The code this process runs was imported at its start; an edit after that is for
    # the next worker.
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted(package.rglob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


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
    env_hash = version.env_hash or requirements_hash(version.requirements, version_runtime_digest(version))
    this = PipelineVersion.objects.filter(pk=version.pk, env_status=PipelineVersion.EnvStatus.BUILDING)
    try:
        python, build_log = ensure_environment(
            env_hash,
            version.requirements,
            version.runtime.lock if version.runtime else "",
            version_runtime_digest(version),
        )
        overlay = sdk_overlay()
    except EnvironmentFailed as exc:
        this.update(env_status=PipelineVersion.EnvStatus.FAILED, env_log=str(exc)[-20000:])
        return "failed"
    except subprocess.TimeoutExpired:
        this.update(
            env_status=PipelineVersion.EnvStatus.FAILED,
            env_log=f"Building the environment took longer than {BUILD_TIMEOUT_SECONDS} s.",
        )
        return "failed"
    try:
        specs = _params_in_environment(version, python, overlay)
    except PipelineRejected as exc:
        this.update(
            env_status=PipelineVersion.EnvStatus.FAILED,
            env_log=f"{build_log}\n$ get_params() in this environment\n{exc.message}"[-20000:],
        )
        return "failed"
    this.update(
        env_status=PipelineVersion.EnvStatus.READY,
        env_log=build_log[-20000:],
        params_train=specs["train"],
        params_run=specs["run"],
    )
    return "ready"


def version_runtime_digest(version: PipelineVersion) -> str:
    return version.runtime.digest if version.runtime_id else ""


def _params_in_environment(version: PipelineVersion, python: Path, overlay: Path) -> dict:
    work_dir = settings.MLOPEN_WORK_DIR / "env-params" / uuid.uuid4().hex
    work_dir.mkdir(parents=True)
    try:
        control = storage.local_folder(version.folder) / version.control_filename  # with its support files
        return evaluate_params(control, work_dir, python=str(python), extra_pythonpath=[str(overlay)])
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
