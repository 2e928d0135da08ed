"""The personas of the security tests and the objects they own, made once per test without a worker.

alice owns everything below; carol is her colleague (both in the group "team"); mallory is another
user with the same role as alice, so every difference in what they get comes from ownership.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from security_fixtures import RESULT, RESULT_IMAGES, SECRET, dataset_of, make_pipeline, make_run


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
    run: object  # succeeded, with a table, a figure, an HTML graph, an image and text
    queued: object
    queued_api: object
    dataset_to_delete: object
    dataset_to_delete_api: object
    run_to_delete: object = None
    run_to_delete_api: object = None
    run_to_bulk_delete: object = None
    webhook: object = None  # alice's
    webhook_to_delete: object = None
    model: object = None  # a model of alice's pipeline, trained by her run
    tokens: dict | None = None  # alice's API tokens, by what the walk does to them

    def persona(self, name: str):
        return None if name == "anonymous" else getattr(self, name)


def _user(model, name: str, role: str):
    from mlopen.core.roles import set_role

    person = model.objects.create_user(username=name, password=None)
    set_role(person, role)
    return person


def _webhook(owner):
    from mlopen.notifications.models import Webhook, WebhookDelivery

    webhook = Webhook.objects.create(
        owner=owner, url=f"https://example.com/{SECRET}", events=["run.succeeded"], secret=f"{SECRET}-key"
    )
    WebhookDelivery.objects.create(webhook=webhook, event="run.succeeded", error=f"{SECRET} error")
    return webhook


@pytest.fixture
def world(db, django_user_model):
    from django.contrib.auth.models import Group

    from mlopen.core.tokens import create_token

    alice = _user(django_user_model, "alice", "author")
    carol = _user(django_user_model, "carol", "user")
    mallory = _user(django_user_model, "mallory", "author")
    admin = _user(django_user_model, "root", "admin")
    team = Group.objects.create(name="team")
    team.user_set.add(alice, carol)
    pipeline = make_pipeline(f"{SECRET}-pipeline", created_by=alice, private_group=team)
    dataset = dataset_of(alice, f"{SECRET}-data")
    run = make_run(alice, pipeline, input=dataset, input_name=dataset.name, result=RESULT, images=RESULT_IMAGES)
    from mlopen.notifications.models import NotificationPreference

    NotificationPreference.objects.create(user=alice, pipeline=pipeline, email="all")
    return World(
        alice=alice,
        carol=carol,
        mallory=mallory,
        admin=admin,
        team=team,
        pipeline=pipeline,
        dataset=dataset,
        run=run,
        queued=make_run(alice, pipeline, status="queued"),
        queued_api=make_run(alice, pipeline, status="queued"),
        dataset_to_delete=dataset_of(alice, f"{SECRET}-doomed"),
        dataset_to_delete_api=dataset_of(alice, f"{SECRET}-doomed2"),
        run_to_delete=make_run(alice, pipeline, name=f"{SECRET}-doomed-run"),
        run_to_delete_api=make_run(alice, pipeline, name=f"{SECRET}-doomed-run2"),
        run_to_bulk_delete=make_run(alice, pipeline, name=f"{SECRET}-doomed-run3"),
        webhook=_webhook(alice),
        webhook_to_delete=_webhook(alice),
        tokens={
            use: create_token(alice, f"{SECRET}-{use}")[0]
            for use in ("kept", "web-rotate", "web-revoke", "api-rotate", "api-revoke")
        },
        model=_model(pipeline, alice),
    )


def _model(pipeline, owner):
    from mlopen.core import storage
    from mlopen.pipelines.models import TrainedModel

    train = make_run(owner, pipeline, kind="train")
    artifact = f"models/{pipeline.pk}/1-run{train.pk}.pkl"
    storage.write_stream(artifact, [f"{SECRET} model".encode()])
    return TrainedModel.objects.create(
        pipeline=pipeline,
        version=pipeline.latest_version,
        run=train,
        number=1,
        artifact=artifact,
        size=20,
        input_name=f"{SECRET}-data",
        train_params={"secret": SECRET},
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
    from rest_framework.test import APIClient

    from mlopen.core.tokens import create_token

    def make(person):
        client = APIClient()
        if person is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Token {create_token(person, 'tests')[1]}")
        return client

    return make
