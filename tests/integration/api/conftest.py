"""Fixtures for the REST API tests: pipelines and finished runs made without a worker."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_pipeline(db):
    """A pipeline with one version whose parameter specs are given directly (no upload, no child process)."""
    from mlopen.pipelines.models import Pipeline, PipelineVersion

    def make(name="iris", params_run=None, params_train=None):
        pipeline = Pipeline.objects.create(name=name, description=f"{name} pipeline")
        PipelineVersion.objects.create(
            pipeline=pipeline,
            number=1,
            control_filename=f"{name}.py",
            folder=f"pipelines/{pipeline.pk}/v1",
            params_run=params_run or [],
            params_train=params_train or [],
        )
        return pipeline

    return make


@pytest.fixture
def make_run(make_pipeline):
    """A run in any state; a succeeded one gets a stored result table (no worker involved)."""
    from django.utils import timezone

    from mlopen.core import storage
    from mlopen.runs import results
    from mlopen.runs.models import Run

    def make(owner, *, pipeline=None, status="succeeded", kind="run", result=None, log="", params=None):
        pipeline = pipeline or make_pipeline(name=f"p{Run.objects.count() + 1}")
        run = Run.objects.create(
            pipeline=pipeline,
            version=pipeline.latest_version,
            kind=kind,
            owner=owner,
            status=status,
            log=log,
            params=params or {},
        )
        if status in Run.FINISHED:
            run.started_at = run.finished_at = timezone.now()
            run.error = "ValueError: broken" if status == "failed" else None
        if status == "succeeded" and kind == "run":
            result = (
                result
                if result is not None
                else {
                    "columns": ["name", "score"],
                    "data": [[f"row{i}", i] for i in range(1, 8)] + [["=SUM(A1)", 0]],
                    "text": "<b>done</b>",
                    "graphs": [],
                }
            )
            # Ids come back after each test's rollback; the files of an earlier run N must not linger.
            storage.delete_tree(f"results/{run.pk}")
            run.result_folder, run.result_rows = results.store_result(run.pk, result)
        run.save()
        return run

    return make
