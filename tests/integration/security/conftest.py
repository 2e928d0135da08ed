"""The personas of the security tests and the objects they own, made once per test without a worker.

alice owns everything below; carol is her colleague (both in the group "team"); mallory is another
user with the same role as alice, so every difference in what they get comes from ownership.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

# What the other personas must never read anywhere: every object alice owns carries this in its name.
SECRET = "alice-secret"
RESULT = {
    "columns": ["name", "score"],
    "data": [["alpha", 1], ["beta", 2]],
    "graphs": [{"kind": "figure", "figure": {"data": [{"type": "bar", "x": ["a"], "y": [1]}], "layout": {}}},
               {"kind": "html", "html": "<div id='g'>drawn</div>"}],
    "text": "<b>alice-secret summary</b>",
}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class World:
    alice: object
    carol: object
    mallory: object
    admin: object
    team: object
    pipeline: object  # alice's, private to "team"
    dataset: object
    run: object  # succeeded, with a table, a figure, an HTML graph and text
    queued: object
    queued_api: object
    dataset_to_delete: object
    dataset_to_delete_api: object

    def persona(self, name: str):
        return None if name == "anonymous" else getattr(self, name)


def _user(model, name: str, role: str):
    from mlopen.core.roles import set_role

    person = model.objects.create_user(username=name, password=None)
    set_role(person, role)
    return person


def make_run(owner, pipeline, *, status="succeeded", result=None, **fields):
    from django.utils import timezone

    from mlopen.runs import results
    from mlopen.runs.models import Run

    now = timezone.now()
    fields.setdefault("log", f"{SECRET} log line\n")
    run = Run.objects.create(pipeline=pipeline, version=pipeline.latest_version, kind=fields.pop("kind", "run"),
                             owner=owner, status=status, started_at=None if status == "queued" else now,
                             finished_at=now if status in Run.FINISHED else None, **fields)
    if result is not None:
        normalized = {"columns": None, "data": None, "graphs": [], "text": None, "warnings": [], **result}
        folder, rows = results.store_result(run.pk, normalized)
        Run.objects.filter(pk=run.pk).update(result_folder=folder, result_rows=rows)
        run.refresh_from_db()
    return run


def make_pipeline(name: str, created_by=None, private_group=None, params_run=None):
    from mlopen.pipelines.models import Pipeline, PipelineVersion

    pipeline = Pipeline.objects.create(name=name, description=f"{name} pipeline", created_by=created_by,
                                       private_group=private_group)
    PipelineVersion.objects.create(pipeline=pipeline, number=1, control_filename=f"{name}.py",
                                   folder=f"pipelines/{pipeline.pk}/v1", params_run=params_run or [],
                                   params_train=[])
    return pipeline


def dataset_of(owner, name: str, content: bytes = b"name,value\nalpha,1\n"):
    from mlopen.datasets.services import store_dataset

    return store_dataset(owner=owner, name=name, filename=f"{name}.csv", chunks=[content])


@pytest.fixture
def world(db, django_user_model):
    from django.contrib.auth.models import Group

    alice = _user(django_user_model, "alice", "author")
    carol = _user(django_user_model, "carol", "user")
    mallory = _user(django_user_model, "mallory", "author")
    admin = _user(django_user_model, "root", "admin")
    team = Group.objects.create(name="team")
    team.user_set.add(alice, carol)
    pipeline = make_pipeline(f"{SECRET}-pipeline", created_by=alice, private_group=team)
    dataset = dataset_of(alice, f"{SECRET}-data")
    run = make_run(alice, pipeline, input=dataset, input_name=dataset.name, result=RESULT)
    return World(
        alice=alice, carol=carol, mallory=mallory, admin=admin, team=team, pipeline=pipeline, dataset=dataset,
        run=run, queued=make_run(alice, pipeline, status="queued"), queued_api=make_run(alice, pipeline, status="queued"),
        dataset_to_delete=dataset_of(alice, f"{SECRET}-doomed"), dataset_to_delete_api=dataset_of(alice, f"{SECRET}-doomed2"),
    )


@pytest.fixture
def web_as():
    """A test client logged in (by session) as a persona, or anonymous for None."""
    from django.test import Client

    def make(person, **kwargs):
        client = Client(**kwargs)
        if person is not None:
            client.force_login(person)
        return client

    return make


@pytest.fixture
def api_as():
    """An API client authenticated by a persona's token, or anonymous for None."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    def make(person):
        client = APIClient()
        if person is not None:
            token, _ = Token.objects.get_or_create(user=person)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make
