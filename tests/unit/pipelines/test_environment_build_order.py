"""The environment build job (runtimes.build_environment): the version's runtime first on a host
without it, so the environment starts as a copy; what it does when that cannot or need not happen.
uv is not run here: the two builds are stood in for, the order and the fallbacks are the subject
(tests/integration/engine/test_s3_storage.py builds both for real on a host without the runtime)."""

from __future__ import annotations

import pytest

from mlopen.pipelines import environments, runtimes
from mlopen.pipelines.models import Pipeline, PipelineVersion, Runtime

pytestmark = pytest.mark.django_db


@pytest.fixture
def calls(monkeypatch):
    made: list[tuple] = []
    monkeypatch.setattr(runtimes, "built_here", lambda digest: False)
    monkeypatch.setattr(runtimes, "ensure_built", lambda digest, lock: made.append(("runtime", digest)))
    monkeypatch.setattr(
        environments, "build_for_version", lambda version_id: made.append(("environment", version_id)) or "ready"
    )
    return made


def _version(runtime_status: str, env_status: str = "building") -> PipelineVersion:
    runtime = Runtime.objects.create(name="tiny", digest="e" * 64, lock="tinydb==4.8.0\n", build_status=runtime_status)
    return PipelineVersion.objects.create(
        pipeline=Pipeline.objects.create(name="needs_tinydb"),
        number=1,
        control_filename="needs_tinydb.py",
        folder="pipelines/1/v1",
        requirements="tinydb>=4\n",
        env_status=env_status,
        runtime=runtime,
    )


def test_the_runtime_is_built_on_this_host_before_the_environment(calls):
    version = _version("building")

    assert runtimes.build_environment(version.pk) == "ready"
    assert calls == [("runtime", "e" * 64), ("environment", version.pk)]


def test_a_runtime_that_does_not_build_here_leaves_the_environment_to_install_the_lock_itself(calls, monkeypatch):
    version = _version("ready")

    def fails(digest, lock):
        calls.append(("runtime", digest))
        raise environments.EnvironmentFailed("uv: no such package")

    monkeypatch.setattr(runtimes, "ensure_built", fails)

    assert runtimes.build_environment(version.pk) == "ready"
    assert calls == [("runtime", "e" * 64), ("environment", version.pk)]


@pytest.mark.parametrize(
    ("runtime_status", "env_status"),
    [("failed", "building"), ("ready", "ready")],
    ids=["the runtime failed to build before", "the environment is no longer building"],
)
def test_no_runtime_build_when_it_failed_before_or_the_build_job_has_nothing_to_do(calls, runtime_status, env_status):
    version = _version(runtime_status, env_status=env_status)

    runtimes.build_environment(version.pk)

    assert calls == [("environment", version.pk)]
