"""The model registry's pages: a model's page for the owner, a maintainer, a viewer and an
outsider; promoting and rolling back on the page; the run form's version and model pickers and
its train → run check; "Run again with changes"."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from mlopen.core.roles import set_role
from mlopen.datasets.services import store_dataset
from mlopen.pipelines.models import ModelAlias, ModelAliasChange, Pipeline, PipelineVersion, TrainedModel
from mlopen.runs.models import Run

pytestmark = pytest.mark.django_db

SCHEMA = {"columns": [{"name": "a", "type": "integer"}, {"name": "b", "type": "integer"}], "rows": 1}


@pytest.fixture
def people(django_user_model):
    made = {}
    for name, role in (("owner", "author"), ("keeper", "author"), ("viewer", "user"), ("outsider", "user")):
        made[name] = django_user_model.objects.create_user(username=name, password="pw-pw-pw-1")
        set_role(made[name], role)
    return made


@pytest.fixture
def world(people):
    team = Group.objects.create(name="team")
    team.user_set.add(people["viewer"], people["keeper"])
    pipeline = Pipeline.objects.create(name="iris", created_by=people["owner"], private_group=team)
    pipeline.maintainers.add(people["keeper"])
    versions = [
        PipelineVersion.objects.create(
            pipeline=pipeline,
            number=n,
            control_filename="iris.py",
            folder=f"pipelines/{pipeline.pk}/v{n}",
            params_run=[{"name": "k", "type": "integer", "default": n}],
        )
        for n in (1, 2)
    ]
    models = [
        TrainedModel.objects.create(
            pipeline=pipeline,
            version=versions[n - 1],
            run=Run.objects.create(
                pipeline=pipeline, version=versions[n - 1], kind="train", owner=people["owner"], status="succeeded"
            ),
            number=n,
            artifact=f"models/{n}.pkl",
            input_name="train.csv",
            input_sha256="cd" * 32,
            input_schema=SCHEMA,
            train_params={"k": n},
        )
        for n in (1, 2)
    ]
    return {"pipeline": pipeline, "models": models, "versions": versions}


def _page(client_for, person, world, model=None):
    model = model or world["models"][0]
    return client_for(person).get(f"/pipelines/{world['pipeline'].pk}/models/{model.pk}/")


def test_the_owner_sees_how_the_model_was_trained_and_can_promote_and_download(client_for, people, world):
    page = _page(client_for, people["owner"], world).content.decode()

    assert "iris model #1" in page
    assert "cd" * 32 in page and "train.csv" in page
    assert 'id="promote"' in page and 'id="model-download"' in page


def test_a_maintainer_may_promote_a_viewer_only_reads_and_an_outsider_gets_404(client_for, people, world):
    keeper = _page(client_for, people["keeper"], world).content.decode()
    viewer = _page(client_for, people["viewer"], world).content.decode()

    assert 'id="promote"' in keeper
    assert 'id="promote"' not in viewer and 'id="model-download"' not in viewer
    assert "cd" * 32 not in viewer and "is not shared with you" in viewer
    assert _page(client_for, people["outsider"], world).status_code == 404


def test_promoting_on_the_page_then_rolling_back_from_the_history(client_for, people, world):
    first, second = world["models"]
    owner = client_for(people["owner"])
    base = f"/pipelines/{world['pipeline'].pk}/models"

    owner.post(f"{base}/{first.pk}/aliases/", {"name": "production"})
    owner.post(f"{base}/{second.pk}/aliases/", {"name": "production"})
    page = owner.get(f"{base}/{second.pk}/").content.decode()
    assert "Roll back production to #1" in page
    owner.post(f"{base}/{first.pk}/aliases/", {"name": "production"})  # what the rollback button posts

    assert ModelAlias.objects.get(name="production").model == first
    assert ModelAliasChange.objects.count() == 3
    assert "Roll back production to #2" in owner.get(f"{base}/{first.pk}/").content.decode()


def test_a_viewer_posting_an_alias_is_refused_and_nothing_changes(client_for, people, world):
    response = client_for(people["viewer"]).post(
        f"/pipelines/{world['pipeline'].pk}/models/{world['models'][0].pk}/aliases/", {"name": "production"}
    )
    assert response.status_code == 403
    assert not ModelAlias.objects.exists()


def test_an_alias_that_is_not_a_slug_is_refused_on_the_page(client_for, people, world):
    owner = client_for(people["owner"])
    url = f"/pipelines/{world['pipeline'].pk}/models/{world['models'][0].pk}/"
    response = owner.post(url + "aliases/", {"name": "not a slug"}, follow=True)
    assert "is not a slug" in response.content.decode()
    assert not ModelAlias.objects.exists()


def test_the_run_form_offers_versions_and_models_and_warns_about_a_lacking_column(client_for, people, world):
    owner = client_for(people["owner"])
    pipeline = world["pipeline"]
    lacking = store_dataset(owner=people["owner"], name="lacking.csv", filename="lacking.csv", chunks=[b"a\n1\n"])
    alike = store_dataset(owner=people["owner"], name="alike.csv", filename="alike.csv", chunks=[b"a,b\n1,2\n"])

    form = owner.get(f"/runs/new/?pipeline={pipeline.pk}&kind=run").content.decode()
    warned = owner.get(f"/runs/new/check/?pipeline={pipeline.pk}&kind=run&input={lacking.pk}").content.decode()
    fine = owner.get(f"/runs/new/check/?pipeline={pipeline.pk}&kind=run&input={alike.pk}").content.decode()

    assert "Latest (v2)" in form and "Default: newest (model #2)" in form
    assert 'id="schema-warning"' in warned and "Column &#x27;b&#x27; (integer)" in warned
    assert 'id="schema-ok"' in fine


def test_starting_a_run_from_the_form_with_a_version_and_model(client_for, people, world):
    owner = client_for(people["owner"])
    first = world["models"][0]
    response = owner.post(
        "/runs/new/",
        {"pipeline": world["pipeline"].pk, "kind": "run", "version": "1", "model": str(first.pk), "params.k": "4"},
    )
    run = Run.objects.get(kind="run")
    assert response.status_code == 302
    assert (run.version.number, run.trained_model, run.params) == (1, first, {"k": 4})


def test_run_again_with_changes_fills_the_form_from_the_old_run(client_for, people, world):
    owner = client_for(people["owner"])
    old = Run.objects.create(
        pipeline=world["pipeline"],
        version=world["versions"][0],
        kind="run",
        owner=people["owner"],
        status="succeeded",
        params={"k": 7},
        trained_model=world["models"][0],
    )
    detail = owner.get(f"/runs/{old.pk}/").content.decode()
    form = owner.get(f"/runs/new/?from={old.pk}").content.decode()

    assert f'href="/runs/new/?from={old.pk}"' in detail
    assert f'href="/pipelines/{world["pipeline"].pk}/models/{world["models"][0].pk}/"' in detail
    assert "Filled in from" in form
    assert '<option value="1" selected>v1</option>' in form
    assert f'<option value="{world["models"][0].pk}" selected>' in form
    assert 'value="7"' in form
