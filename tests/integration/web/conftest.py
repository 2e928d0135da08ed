"""Fixtures for the web page tests: logged-in clients and pipelines/runs made without a worker."""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Set Django up before collection: these test modules import models at module level.

    The root conftest sets DJANGO_SETTINGS_MODULE in its own pytest_configure, after pytest-django
    looked for it, so pytest-django leaves the app registry unloaded until the first db fixture.
    """
    import os

    if not os.environ.get("PYTEST_XDIST_WORKER") and getattr(config.option, "numprocesses", None):
        return  # the xdist controller runs no tests and has no settings (see the root conftest)
    import django

    django.setup()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The personas' passwords are hashed once per test; the real hasher takes ~0.5 s each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def client_for(client):
    """A test client logged in as ``person`` (each call gets its own client)."""
    from django.test import Client

    def login(person):
        new = Client()
        new.force_login(person)
        return new

    return login


@pytest.fixture
def alice_client(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user(username="mallory", password="mallory-password-1")


@pytest.fixture
def make_pipeline(db):
    """A pipeline with one version whose parameter specs are given directly (no upload, no child process)."""

    from mlopen.pipelines.models import Pipeline, PipelineVersion

    def make(name="iris", params_run=None, params_train=None, description="Classifies iris flowers."):
        pipeline = Pipeline.objects.create(name=name, description=description)
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
def make_run(db):
    """A run in any state; with ``result`` (a normalized run_pipeline result) it is stored as a worker would."""

    from django.utils import timezone

    from mlopen.runs import results
    from mlopen.runs.models import Run

    def make(owner, pipeline, status="succeeded", kind="run", result=None, images=(), **fields):
        now = timezone.now()
        finished = status in Run.FINISHED
        run = Run.objects.create(
            pipeline=pipeline,
            version=pipeline.latest_version,
            kind=kind,
            owner=owner,
            status=status,
            started_at=None if status == Run.Status.QUEUED else now - timezone.timedelta(seconds=75),
            finished_at=now if finished else None,
            worker="" if status == Run.Status.QUEUED else "worker-1",
            **fields,
        )
        if result is not None:
            normalized = {"columns": None, "data": None, "graphs": [], "text": None, "warnings": [], **result}
            kept = results.keep(run.pk, normalized, list(images))  # small ones in the database
            if kept.in_database is not None:
                kept.in_database.save(force_insert=True)
            Run.objects.filter(pk=run.pk).update(**kept.run_fields())
            run.refresh_from_db()
        return run

    return make
