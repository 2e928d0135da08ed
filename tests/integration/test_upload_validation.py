"""Uploading a control file through the API: what is refused, how the refusal reads, and that a
refused upload leaves nothing behind. No worker is needed: get_params runs in a child process
started by the web process itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def _stored_files() -> set[str]:
    root = Path(settings.MLOPEN_STORAGE_DIR)
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def _staging_leftovers() -> list[Path]:
    folder = settings.MLOPEN_WORK_DIR / "uploads"
    return list(folder.iterdir()) if folder.exists() else []


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Each test creates its admin afresh; the default hasher would spend half a second on it.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def refused(upload_pipeline):
    """Upload something that must be refused; check nothing was stored; return the 400 body."""

    from mlopen.pipelines.models import Pipeline, PipelineVersion

    def upload(control, **kwargs):
        pipelines, versions, files = Pipeline.objects.count(), PipelineVersion.objects.count(), _stored_files()
        body = upload_pipeline(control, expect=400, **kwargs)
        assert (Pipeline.objects.count(), PipelineVersion.objects.count()) == (pipelines, versions)
        assert _stored_files() == files
        assert _staging_leftovers() == []
        return body

    return upload


def test_upload_with_syntax_error_is_refused_naming_the_line(refused):
    source = "def train(inpt, params=None):\n    pass\n\ndef run_pipeline(input, model, args params=None):\n    pass\n"

    body = refused("broken.py", source=source)

    assert "line 4" in body["errors"]["control"]
    assert "broken.py" in body["detail"]


def test_upload_without_run_pipeline_is_refused_naming_it(refused):
    body = refused("contract_no_run_pipeline.py")

    assert "must define run_pipeline" in body["errors"]["control"]
    assert "train" not in body["errors"]["control"].split("must define")[1].split(":")[0]


def test_upload_without_train_is_refused_naming_it(refused):
    body = refused("contract_no_train.py")

    assert "must define train" in body["errors"]["control"]


def test_upload_whose_get_params_raises_is_refused_with_its_message(refused):
    body = refused("contract_params_raise.py")

    assert "ValueError: the form is not ready yet" in body["errors"]["control"]


def test_upload_whose_get_params_hangs_is_refused_after_the_params_time_limit(refused, settings):
    settings.MLOPEN_PARAMS_TIMEOUT = 1

    body = refused("contract_params_hang.py")

    assert "took longer than 1 s (MLOPEN_PARAMS_TIMEOUT)" in body["errors"]["control"]


def test_upload_that_imports_a_missing_module_is_refused_naming_the_module(refused):
    body = refused("contract_import_error.py")

    assert "mlopen_no_such_module" in body["errors"]["control"]


def test_upload_with_an_unknown_parameter_type_is_refused_naming_the_parameter(refused):
    body = refused("contract_params_unknown_type.py")

    assert "'when'" in body["errors"]["control"]
    assert "'date'" in body["errors"]["control"]


def test_upload_of_a_file_that_is_not_python_is_refused(refused):
    body = refused("control.txt", source="def train(inpt): pass\ndef run_pipeline(i, m, a): pass\n")

    assert ".py" in body["errors"]["control"]


def test_refused_reupload_leaves_the_existing_version_untouched(upload_pipeline, refused, api):
    from mlopen.pipelines.models import PipelineVersion

    upload_pipeline("contract_version.py", name="kept")

    refused("contract_no_train.py", name="kept")

    body = api.get("/api/v1/pipelines/").json()
    kept = next(p for p in body["results"] if p["name"] == "kept")
    assert kept["version"] == 1
    assert PipelineVersion.objects.filter(pipeline__name="kept").count() == 1
