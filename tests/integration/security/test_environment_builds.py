"""Building a pipeline's environment from its requirements.txt runs no code of the pipeline's author
on the worker: requirement lines name packages of the index only, only wheels are installed unless
MLOPEN_BUILD_FROM_SOURCE says otherwise, and uv runs inside the sandbox, where it can write only
the new environment, the build cache and its /tmp, and read nothing else of MLOPEN_HOME.

The real builds reach the package index (tinydb, setuptools) as the engine's environment tests do.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import textwrap
import uuid
from pathlib import Path

import pytest

from mlopen.pipelines import environments
from mlopen.pipelines.services import PipelineRejected
from mlopen_runner import sandbox

SECRETS = ("DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "MLOPEN_ADMIN_PASSWORD")


@pytest.fixture
def bubblewrap():
    """The sandbox in its strict mode, as a production worker has it; skipped where bwrap cannot work."""
    previous = sandbox.mode()
    sandbox.configure("bubblewrap")
    try:
        sandbox.require()
    except sandbox.SandboxUnavailable as exc:
        sandbox.configure(previous)
        pytest.skip(str(exc))
    yield
    sandbox.configure(previous)


@pytest.fixture
def env_hash():
    """A fresh environment of its own for each test, removed afterwards."""
    value = uuid.uuid4().hex * 2
    yield value
    for leftover in (environments.env_path(value), environments.envs_root() / f"{value[:24]}.build"):
        subprocess.run(["rm", "-rf", str(leftover)], check=False)


@pytest.fixture
def spied_runs(monkeypatch):
    """Every process the build starts, recorded instead of run: (argv, keyword arguments)."""
    calls = []

    def run(argv, **kwargs):
        calls.append((list(argv), kwargs))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(environments.subprocess, "run", run)
    return calls


def _binds(argv: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """({source: destination} bound writable, {source: destination} bound read-only) of a bwrap argv."""
    writable, readable = {}, {}
    for i, flag in enumerate(argv[: argv.index("--")]):
        if flag == "--bind":
            writable[argv[i + 1]] = argv[i + 2]
        elif flag in ("--ro-bind", "--ro-bind-try"):
            readable[argv[i + 1]] = argv[i + 2]
    return writable, readable


def _sdist(folder: Path, name: str, setup_py: str) -> None:
    """A source distribution `name`-1.0.tar.gz in `folder` whose setup.py is `setup_py`."""
    folder.mkdir(parents=True, exist_ok=True)
    root = f"{name.replace('-', '_')}-1.0"
    with tarfile.open(folder / f"{root}.tar.gz", "w:gz") as archive:
        for member, text in {
            "setup.py": setup_py,
            "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{member}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    "line",
    [
        "evil-1.0.tar.gz",
        "./evil",
        "evil @ file:///x",
        "https://x/evil.whl",
        "-e .",
        "evil.zip",
        "evil.whl",
        "dist/evil-1.0.tar.gz",
        "evil@https://x/evil-1.0.tar.gz",
        "tinydb==4.8 --hash=sha256:0",
    ],
)
def test_requirement_naming_a_local_archive_is_refused(line):
    with pytest.raises(PipelineRejected) as refused:
        environments.check_requirements(f"tinydb\n{line}\n".encode())

    assert refused.value.field == "requirements"
    assert refused.value.message.startswith(f"requirements.txt line 2 ({line!r}): ")
    assert refused.value.message.endswith(".")


def test_a_requirement_that_names_a_file_says_what_to_write_instead():
    with pytest.raises(PipelineRejected) as refused:
        environments.check_requirements(b"evil-1.0.tar.gz\n")

    assert refused.value.message == (
        "requirements.txt line 1 ('evil-1.0.tar.gz'): this names a file (an archive or a wheel), not a package; "
        "name a package of the index instead, like 'package==1.2' or 'package>=1.0'."
    )


def test_plain_requirements_with_extras_versions_and_markers_are_kept_normalized():
    text = "TinyDB >= 4 ,<5  # the database\n\nrequests[socks]~=2.31\npandas ; python_version >= '3.8'\n"

    assert environments.check_requirements(text.encode()) == (
        'TinyDB<5,>=4\nrequests[socks]~=2.31\npandas; python_version >= "3.8"\n'
    )


def test_a_stored_requirement_from_before_the_stricter_check_is_not_built(env_hash, spied_runs):
    with pytest.raises(environments.EnvironmentFailed) as failed:
        environments.ensure_environment(env_hash, "evil-1.0.tar.gz\n")

    assert spied_runs == []
    assert environments.failure_summary(str(failed.value)).startswith(
        "requirements.txt line 1 ('evil-1.0.tar.gz'): this names a file"
    )


def test_build_runs_inside_the_sandbox_and_cannot_read_mlopen_home(
    settings, bubblewrap, env_hash, spied_runs, monkeypatch
):
    for name in SECRETS:
        monkeypatch.setenv(name, "secret")
    home = Path(settings.MLOPEN_HOME)
    target = environments.env_path(env_hash)
    scratch = environments.envs_root() / f"{env_hash[:24]}.build"

    environments.ensure_environment(env_hash, "tinydb\n")

    assert [argv[argv.index("--") + 1 :][:2] for argv, _ in spied_runs] == [
        [environments._uv(), "venv"],
        [environments._uv(), "pip"],
    ]
    for argv, kwargs in spied_runs:
        assert Path(argv[0]).name == "bwrap"
        writable, readable = _binds(argv)
        # Writable: the new environment, the build cache and the sandbox's own /tmp; nothing else.
        assert writable == {
            str(target): str(target),
            str(environments.uv_cache()): str(environments.uv_cache()),
            str(scratch / "tmp"): "/tmp",
        }
        # Nothing bound holds MLOPEN_HOME whole: of it only the build's own files are there.
        for source in [*writable, *readable]:
            assert not home.is_relative_to(source), source
        assert {source for source in readable if Path(source).is_relative_to(home)} == {
            str(environments.envs_root() / f"{env_hash[:24]}.requirements.txt"),
            str(scratch / "home"),
        }
        # It starts in an empty folder, also its HOME, with a clean environment.
        assert argv[argv.index("--chdir") + 1] == str(scratch / "home") == kwargs["env"]["HOME"]
        assert kwargs["cwd"] == scratch / "home"
        assert not set(SECRETS) & set(kwargs["env"])
        assert kwargs["env"]["UV_NO_CONFIG"] == "1"
        assert kwargs["env"]["TMPDIR"] == "/tmp"
        assert kwargs["pass_fds"] and argv[argv.index("--seccomp") + 1] == str(kwargs["pass_fds"][0])


def test_build_installs_wheels_only_by_default(settings, env_hash, spied_runs):
    environments.ensure_environment(env_hash, "tinydb\n")
    default = spied_runs[-1][0]
    settings.MLOPEN_BUILD_FROM_SOURCE = True
    spied_runs.clear()
    environments.ensure_environment(env_hash, "tinydb\n")  # built again: the spy made no python
    from_source = spied_runs[-1][0]

    assert default[default.index("--only-binary") :][:2] == ["--only-binary", ":all:"]
    assert "--only-binary" not in from_source and "--no-build" not in from_source


def test_a_real_build_in_the_sandbox_installs_a_wheel_from_the_index(bubblewrap, env_hash):
    python, build_log = environments.ensure_environment(env_hash, "tinydb>=4\n")

    imported = subprocess.run(
        [str(python), "-c", "import tinydb; print(tinydb.__file__)"], capture_output=True, text=True, check=True
    )
    assert "+ tinydb==4." in build_log
    assert imported.stdout.startswith(str(environments.env_path(env_hash)))


def test_a_package_with_only_a_source_distribution_is_not_built_by_default(bubblewrap, env_hash, tmp_path, monkeypatch):
    ran = tmp_path / "setup-py-ran"
    _sdist(tmp_path / "links", "mlopen-sdist-only-probe", f"open({str(ran)!r}, 'w').close()\n")
    monkeypatch.setenv("UV_FIND_LINKS", str(tmp_path / "links"))

    with pytest.raises(environments.EnvironmentFailed) as failed:
        environments.ensure_environment(env_hash, "mlopen-sdist-only-probe==1.0\n")

    summary = environments.failure_summary(str(failed.value))
    assert summary.startswith(
        "Only wheels are installed, and a requirement has no wheel for this Python and "
        "platform, only a source distribution"
    )
    assert "MLOPEN_BUILD_FROM_SOURCE=true" in summary
    assert not ran.exists()
    assert not environments.env_path(env_hash).exists()


def test_a_source_build_that_is_allowed_runs_inside_the_sandbox(settings, bubblewrap, env_hash, tmp_path, monkeypatch):
    """The build code of an sdist tries to read MLOPEN_HOME, the worker's folder and the platform's
    secrets (failing the build if it can) and to write into MLOPEN_HOME (checked from outside: a
    path under /tmp lands in the sandbox's own /tmp)."""
    settings.MLOPEN_BUILD_FROM_SOURCE = True
    home = Path(settings.MLOPEN_HOME)
    secret = home / f"secret-{uuid.uuid4().hex}"
    secret.write_text("the platform's secret")
    planted = [home / f"planted-{uuid.uuid4().hex}", environments.envs_root() / f"planted-{uuid.uuid4().hex}"]
    setup_py = textwrap.dedent(f"""
        import os
        reached = []
        for path in ({str(secret)!r}, {str(Path.cwd() / "pyproject.toml")!r}):
            try:
                open(path).read()
                reached.append("read " + path)
            except OSError:
                pass
        for path in {[str(path) for path in planted]!r}:
            try:
                open(path, "w").close()
            except OSError:
                pass
        reached += [name for name in {SECRETS!r} if name in os.environ]
        if reached:
            raise SystemExit("the build reached: " + ", ".join(reached))
        from setuptools import setup
        setup(name="mlopen-sdist-only-probe", version="1.0", py_modules=[])
    """)
    _sdist(tmp_path / "links", "mlopen-sdist-only-probe", setup_py)
    monkeypatch.setenv("UV_FIND_LINKS", str(tmp_path / "links"))
    for name in SECRETS:
        monkeypatch.setenv(name, "secret")

    try:
        python, build_log = environments.ensure_environment(env_hash, "mlopen-sdist-only-probe==1.0\n")
    finally:
        secret.unlink()

    assert "+ mlopen-sdist-only-probe==1.0" in build_log
    assert not any(path.exists() for path in planted)
    assert python.exists()
