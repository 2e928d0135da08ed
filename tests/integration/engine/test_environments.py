"""Per-pipeline environments: a requirements.txt uploaded beside the control file gets its own
virtual environment (built by uv on a worker), and the pipeline runs in it with the SDK overlay
but without the platform's packages.

The package used, tinydb, is small, pure Python, without dependencies, and not a dependency of
mlopen (test_the_test_package_is_not_installed_in_the_platform checks that).
"""

from __future__ import annotations

import importlib.util

import pytest
from engine_support import poll

from mlopen.pipelines.models import Pipeline, PipelineVersion

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

USES_TINYDB = """
import tinydb

def get_params(run=False):
    return {"greeting": ("string", {"default": "hello"})} if run else ""

def train(inpt, params=None):
    pass

def run_pipeline(input, model, args, params=None):
    try:
        import django
        platform = "django importable"
    except ImportError:
        platform = "no django"
    return {"text": f"{params['greeting']} from tinydb {tinydb.__version__}; {platform}"}
"""


def _version(pipeline_name: str) -> PipelineVersion:
    return PipelineVersion.objects.get(pipeline__name=pipeline_name)


def _built(pipeline_name: str, timeout: float = 180) -> PipelineVersion:
    return poll(
        lambda: (v := _version(pipeline_name)).env_status in ("ready", "failed") and v,
        timeout=timeout,
        interval=0.2,
        message=f"the environment of {pipeline_name} is built",
    )


def test_the_test_package_is_not_installed_in_the_platform():
    assert importlib.util.find_spec("tinydb") is None


def test_a_pipeline_with_requirements_runs_in_its_own_environment(
    pipeline_from, submit, wait_for_run, api, run_body, module_worker
):
    # requirements.txt as a support file beside the control file (the API's field works the same).
    uploaded = pipeline_from("db_user", USES_TINYDB, files={"requirements.txt": "tinydb>=4\n"})

    version = _built("db_user")
    run = wait_for_run(submit("db_user", params={"greeting": "hi"})["id"], timeout=60)

    assert uploaded["versions"][0]["env_status"] == "building"
    assert version.env_status == "ready", version.env_log
    assert (version.requirements, version.support_files) == ("tinydb>=4\n", [])
    assert "+ tinydb==4." in version.env_log
    # get_params was read inside the environment, where `import tinydb` works.
    assert api.get(f"/api/v1/pipelines/{uploaded['id']}/").json()["params"]["run"] == {
        "greeting": {"type": "string", "default": "hello"}
    }
    assert run.status == "succeeded", f"{run.error}\n{run.log}"
    text = run_body(run.pk)["result"]["text"]
    assert text.startswith("hi from tinydb 4.") and text.endswith("; no django"), text


def test_requirements_that_cannot_be_installed_leave_the_version_unusable_with_uvs_error(
    pipeline_from, submit, module_worker
):
    pipeline_from("broken_env", USES_TINYDB, requirements="mlopen-no-such-package-4f2a==1.0\n")

    version = _built("broken_env")
    refused = submit("broken_env", expect=409)

    assert version.env_status == "failed"
    assert "mlopen-no-such-package-4f2a" in version.env_log
    assert "not found in the package registry" in version.env_log
    assert refused["detail"].startswith(
        "broken_env v1 cannot run: building its environment from requirements.txt failed: "
    )
    assert "mlopen-no-such-package-4f2a was not found in the package registry" in refused["detail"]


def test_a_run_is_refused_while_the_environment_is_still_being_built(pipeline_from, submit, unserved_queue):
    # The build job goes to the pipeline's queue, which no worker serves: it stays "building".
    Pipeline.objects.create(name="waiting_env", queue=unserved_queue)
    pipeline_from("waiting_env", USES_TINYDB, requirements="tinydb\n")

    refused = submit("waiting_env", expect=409)

    assert refused["detail"] == (
        "waiting_env v1 cannot run yet: its environment is still being built from "
        "requirements.txt; try again when it is ready."
    )


@pytest.mark.parametrize(
    "line",
    [
        "-e .",
        "git+https://github.com/msiemens/tinydb.git",
        "file:///tmp/tinydb",
        "--index-url https://example.org/simple",
        "tinydb @ https://example.org/tinydb.whl",
    ],
)
def test_requirement_lines_that_could_fetch_arbitrary_code_are_refused_at_upload(line, pipeline_from, api):
    body = pipeline_from("refused_env", USES_TINYDB, requirements=f"pandas\n{line}\n", expect=400)

    assert body["errors"]["requirements"].startswith(f"requirements.txt line 2 ({line!r}): ")
    assert not PipelineVersion.objects.filter(pipeline__name="refused_env").exists()


def test_two_requirements_files_in_one_upload_are_refused(pipeline_from):
    body = pipeline_from(
        "twice_env", USES_TINYDB, requirements="tinydb\n", files={"requirements.txt": "tinydb\n"}, expect=400
    )

    assert body["errors"]["requirements"] == (
        "Two requirements.txt files were given; send one, as the requirements field or among the support files."
    )


def test_an_environment_starts_as_a_copy_of_its_built_runtime_sharing_no_file_with_it(settings):
    import shutil
    import subprocess

    from mlopen.pipelines import environments, runtimes
    from mlopen.pipelines.interpreters import describe_interpreter

    lock = runtimes.lock_of(settings.MLOPEN_DEFAULT_RUNTIME)
    digest = runtimes.digest_of(lock)
    base = runtimes.ensure_built(digest, lock)[0].parent.parent
    describe_interpreter(base / "bin" / "python")  # the runtime's package list, as after its first run
    requirements = "tinydb==4.8.2\n"
    env_hash = environments.requirements_hash(requirements, digest)
    shutil.rmtree(environments.env_path(env_hash), ignore_errors=True)

    python, log = environments.ensure_environment(env_hash, requirements, lock, digest)

    env = python.parent.parent
    assert "copy the runtime's environment" in log and "+ tinydb==4.8.2" in log, log
    assert "numpy" not in log  # nothing of the runtime was installed again
    numpy_init = next((env / "lib").glob("python*/site-packages/numpy/__init__.py"))
    runtime_numpy_init = next((base / "lib").glob("python*/site-packages/numpy/__init__.py"))
    # A copy, not hard links: what a source build of a requirement writes stays in the environment.
    assert numpy_init.stat().st_ino != runtime_numpy_init.stat().st_ino
    assert list((numpy_init.parent / "__pycache__").glob("__init__.*.pyc")), "the compiled bytecode came along"
    f2py = (env / "bin" / "f2py").read_text()
    assert str(env) in f2py and str(base) not in f2py
    assert describe_interpreter(python)["packages"]["tinydb"] == "4.8.2"
    assert "tinydb" not in describe_interpreter(base / "bin" / "python")["packages"]
    assert (env / environments.READY_MARKER).read_text() == requirements
    imported = subprocess.run(
        [str(python), "-c", "import numpy, tinydb; print(tinydb.__version__, numpy.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.split() == ["4.8.2", str(numpy_init)]
