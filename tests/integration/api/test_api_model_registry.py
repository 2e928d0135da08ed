"""The model registry over the API: a model's page data, aliases, lineage, download, and how a run
chooses its model and version. Owner, maintainer, another user who sees the pipeline, an outsider
who does not (private pipeline), each with what they get. No worker: runs are made directly."""

from __future__ import annotations

import pickle

import pytest
from django.contrib.auth.models import Group

from mlopen.core import storage
from mlopen.core.roles import set_role
from mlopen.datasets import services as dataset_services
from mlopen.pipelines.models import ModelAlias, ModelAliasChange, Pipeline, PipelineVersion, TrainedModel
from mlopen.runs.models import Run

pytestmark = pytest.mark.django_db

TRAINED_SCHEMA = {
    "columns": [
        {"name": "sepal", "type": "float"},
        {"name": "petal", "type": "float"},
        {"name": "kind", "type": "string"},
    ],
    "rows": 3,
    "rows_estimated": False,
}


@pytest.fixture
def people(django_user_model, api_for):
    made = {}
    for name, role in (("owner", "author"), ("keeper", "author"), ("viewer", "user"), ("outsider", "user")):
        person = django_user_model.objects.create_user(username=name, password=f"{name}-password-1")
        set_role(person, role)
        made[name] = api_for(person)
    return made


@pytest.fixture
def world(people):
    """A pipeline of `owner` (maintained by `keeper`, private to a group `viewer` is in) with two
    versions and two trained models; a second pipeline with a model of its own."""
    owner = people["owner"].user
    team = Group.objects.create(name="team")
    team.user_set.add(people["viewer"].user, people["keeper"].user)
    pipeline = Pipeline.objects.create(name="iris", created_by=owner, private_group=team)
    pipeline.maintainers.add(people["keeper"].user)
    versions = [
        PipelineVersion.objects.create(
            pipeline=pipeline,
            number=n,
            control_filename="iris.py",
            folder=f"pipelines/{pipeline.pk}/v{n}",
            params_run=[{"name": "k", "type": "integer", "default": 3}],
        )
        for n in (1, 2)
    ]
    models = []
    for n in (1, 2):
        train = Run.objects.create(
            pipeline=pipeline, version=versions[n - 1], kind="train", owner=owner, status="succeeded", params={"k": n}
        )
        artifact = f"models/{pipeline.pk}/{n}-run{train.pk}.pkl"
        storage.write_stream(artifact, [pickle.dumps({"models": {"m": n}, "args": {}})])
        models.append(
            TrainedModel.objects.create(
                pipeline=pipeline,
                version=versions[n - 1],
                run=train,
                number=n,
                artifact=artifact,
                size=40,
                input_name="iris.csv",
                input_sha256="ab" * 32,
                input_schema=TRAINED_SCHEMA,
                train_params={"k": n},
                metrics={"accuracy": 0.9 + n / 100},
                environment={"python": "3.11", "packages": {"scikit-learn": "1.5.0"}},
            )
        )
    other = Pipeline.objects.create(name="other", created_by=owner)
    other_version = PipelineVersion.objects.create(
        pipeline=other, number=1, control_filename="o.py", folder=f"pipelines/{other.pk}/v1"
    )
    other_model = TrainedModel.objects.create(
        pipeline=other, version=other_version, number=1, artifact="models/none.pkl"
    )
    return {"pipeline": pipeline, "models": models, "other_model": other_model, "versions": versions}


def _url(world, model=None, tail=""):
    model = model or world["models"][0]
    return f"/api/v1/pipelines/{world['pipeline'].pk}/models/{model.pk}/{tail}"


def _csv(owner, name, text):
    return dataset_services.store_dataset(owner=owner, name=name, filename=name, chunks=[text.encode()])


# --- reading a model ---------------------------------------------------------------------------


def test_the_owner_reads_a_model_with_its_training_lineage_and_download_link(people, world):
    body = people["owner"].get(_url(world)).json()

    assert (body["number"], body["version"], body["aliases"]) == (1, 1, [])
    assert body["training"]["input_name"] == "iris.csv"
    assert body["training"]["input_sha256"] == "ab" * 32
    assert body["training"]["params"] == {"k": 1}
    assert body["training"]["metrics"] == {"accuracy": 0.91}
    assert body["training"]["environment"]["packages"] == {"scikit-learn": "1.5.0"}
    assert body["training"]["input_schema"]["columns"][0] == {"name": "sepal", "type": "float"}
    assert body["used_by"]["count"] == 0
    assert body["download"].endswith(_url(world, tail="download/"))


def test_a_user_who_sees_the_pipeline_but_not_the_training_run_sees_the_model_without_its_training(people, world):
    body = people["viewer"].get(_url(world)).json()

    assert body["number"] == 1
    assert body["training"] is None
    assert body["download"] is None


def test_an_outsider_gets_404_for_the_model_its_runs_its_download_and_a_patch(people, world):
    outsider = people["outsider"]
    for tail in ("", "runs/", "download/"):
        assert outsider.get(_url(world, tail=tail)).status_code == 404
    assert outsider.patch(_url(world), {"aliases": ["production"]}, format="json").status_code == 404
    assert outsider.get(f"/api/v1/pipelines/{world['pipeline'].pk}/models/").status_code == 404
    assert not ModelAlias.objects.exists()


def test_a_model_of_another_pipeline_is_404_under_this_pipeline(people, world):
    wrong = f"/api/v1/pipelines/{world['pipeline'].pk}/models/{world['other_model'].pk}/"
    assert people["owner"].get(wrong).status_code == 404


def test_runs_that_used_a_model_are_listed_newest_first_and_only_those_the_user_sees(people, world):
    model = world["models"][0]
    for who in ("owner", "owner", "viewer"):
        Run.objects.create(
            pipeline=world["pipeline"],
            version=world["versions"][0],
            kind="run",
            owner=people[who].user,
            trained_model=model,
        )
    owners_view = people["owner"].get(_url(world, tail="runs/?page_size=1")).json()
    viewers_view = people["viewer"].get(_url(world, tail="runs/")).json()

    assert owners_view["count"] == 2 and len(owners_view["results"]) == 1
    assert owners_view["results"][0]["owner"] == "owner"
    assert viewers_view["count"] == 1 and viewers_view["results"][0]["owner"] == "viewer"
    assert people["viewer"].get(_url(world)).json()["used_by"]["count"] == 1


# --- download ----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "keeper"])
def test_the_owner_and_a_maintainer_download_the_stored_objects_as_an_attachment(people, world, who):
    response = people[who].get(_url(world, tail="download/"))

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="iris-model-1.pkl"'
    assert pickle.loads(b"".join(response.streaming_content)) == {"models": {"m": 1}, "args": {}}


def test_a_user_who_only_sees_the_pipeline_cannot_download_its_models(people, world):
    assert people["viewer"].get(_url(world, tail="download/")).status_code == 404


# --- aliases -----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "keeper"])
def test_the_owner_or_a_maintainer_promotes_a_model_and_moving_the_alias_back_is_recorded(people, world, who):
    first, second = world["models"]
    client = people[who]

    assert client.patch(_url(world, first), {"aliases": ["production"]}, format="json").json()["aliases"] == [
        "production"
    ]
    moved = client.patch(_url(world, second), {"aliases": ["production", "staging"]}, format="json").json()
    back = client.patch(_url(world, first), {"aliases": ["production"]}, format="json").json()

    assert moved["aliases"] == ["production", "staging"]
    assert back["aliases"] == ["production"]
    assert people["owner"].get(_url(world, second)).json()["aliases"] == ["staging"]
    changes = list(ModelAliasChange.objects.order_by("id").values_list("name", "from_model", "to_model", "changed_by"))
    user_id = client.user.pk
    assert changes == [
        ("production", None, first.pk, user_id),
        ("production", first.pk, second.pk, user_id),
        ("staging", None, second.pk, user_id),
        ("production", second.pk, first.pk, user_id),
    ]
    history = back["alias_history"]
    assert [(h["name"], h["from_model"], h["to_model"], h["changed_by"]) for h in history][:2] == [
        ("production", second.pk, first.pk, who),
        ("production", first.pk, second.pk, who),
    ]


def test_a_user_who_sees_the_pipeline_but_does_not_keep_it_cannot_move_aliases(people, world):
    response = people["viewer"].patch(_url(world), {"aliases": ["production"]}, format="json")

    assert response.status_code == 403
    assert "its maintainers and admins" in response.json()["detail"]
    assert not ModelAlias.objects.exists()


@pytest.mark.parametrize("aliases", [["Not a slug"], ["production", "x" * 65], "production", [""], [3]])
def test_an_alias_that_is_not_a_slug_is_a_400_naming_aliases_and_nothing_changes(people, world, aliases):
    people["owner"].patch(_url(world), {"aliases": ["staging"]}, format="json")

    response = people["owner"].patch(_url(world), {"aliases": aliases}, format="json")

    assert response.status_code == 400
    assert "aliases" in response.json()["errors"]
    assert list(ModelAlias.objects.values_list("name", "model")) == [("staging", world["models"][0].pk)]


def test_the_model_list_shows_each_models_aliases(people, world):
    people["owner"].patch(_url(world, world["models"][0]), {"aliases": ["production"]}, format="json")

    body = people["viewer"].get(f"/api/v1/pipelines/{world['pipeline'].pk}/models/").json()

    assert [(m["number"], m["aliases"]) for m in body["results"]] == [(2, []), (1, ["production"])]


# --- a run's model and version -----------------------------------------------------------------


def _run(client, world, expect=201, **fields):
    response = client.post("/api/v1/runs/", {"pipeline": world["pipeline"].pk, **fields}, format="json")
    assert response.status_code == expect, response.content
    return response.json()


def test_a_run_uses_the_newest_model_then_the_production_one_then_the_one_it_names(people, world):
    first, second = world["models"]
    client = people["owner"]

    newest = _run(client, world)
    client.patch(_url(world, first), {"aliases": ["production"]}, format="json")
    production = _run(client, world)
    named = _run(client, world, model=second.pk)
    by_alias = _run(client, world, model="production")

    assert (newest["trained_model"], newest["model_alias"]) == (second.pk, "")
    assert (production["trained_model"], production["model_alias"]) == (first.pk, "production")
    assert (named["trained_model"], named["model_requested"]) == (second.pk, str(second.pk))
    assert (by_alias["trained_model"], by_alias["model_alias"]) == (first.pk, "production")


def test_a_run_names_a_version_or_gets_the_latest(people, world):
    client = people["owner"]
    assert _run(client, world)["version"] == 2
    chosen = _run(client, world, version=1)
    assert (chosen["version"], chosen["version_requested"]) == (1, 1)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "other"}, "model"),  # an alias the pipeline does not have
        ({"model": 999999}, "model"),  # no such model
        ({"model": "not a slug!"}, "model"),
        ({"model": [1]}, "model"),
        ({"version": 7}, "version"),
        ({"version": "two"}, "version"),
        ({"kind": "train", "model": "production"}, "model"),
    ],
)
def test_a_bad_model_or_version_is_a_400_naming_the_field_and_no_run_is_made(people, world, fields, field):
    response = people["owner"].post("/api/v1/runs/", {"pipeline": world["pipeline"].pk, **fields}, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert not Run.objects.filter(kind="run").exists()


def test_a_model_of_another_pipeline_is_a_400_that_says_whose_it_is(people, world):
    response = people["owner"].post(
        "/api/v1/runs/", {"pipeline": world["pipeline"].pk, "model": world["other_model"].pk}, format="json"
    )
    assert response.status_code == 400
    assert "is a model of pipeline 'other'" in response.json()["errors"]["model"]


def test_a_model_of_a_pipeline_the_user_cannot_see_is_unknown(people, world):
    world["other_model"].pipeline.private_group = Group.objects.create(name="closed")
    world["other_model"].pipeline.save()
    public = Pipeline.objects.create(name="public", created_by=people["viewer"].user)
    PipelineVersion.objects.create(pipeline=public, number=1, control_filename="p.py", folder="pipelines/x/v1")

    response = people["viewer"].post(
        "/api/v1/runs/", {"pipeline": public.pk, "model": world["other_model"].pk}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"]["model"] == f"There is no model {world['other_model'].pk}."


# --- schema warnings ---------------------------------------------------------------------------


def test_a_run_whose_input_lacks_a_trained_column_carries_a_warning_and_still_starts(people, world):
    owner = people["owner"]
    alike = _csv(owner.user, "alike.csv", "sepal,petal,kind\n1.0,2.0,a\n")
    lacking = _csv(owner.user, "lacking.csv", "sepal,kind,extra\n1.0,a,x\n")

    assert _run(owner, world, input=alike.pk)["warnings"] == []
    run = _run(owner, world, input=lacking.pk)

    assert run["status"] == "queued"
    assert [(w["kind"], w["column"]) for w in run["warnings"]] == [
        ("missing_column", "petal"),
        ("extra_column", "extra"),
    ]
    assert "'petal' (float) that the model was trained on is missing" in run["warnings"][0]["message"]
    assert owner.get(f"/api/v1/runs/{run['id']}/").json()["warnings"] == run["warnings"]


def test_a_column_whose_type_changed_is_a_warning(people, world):
    owner = people["owner"]
    changed = _csv(owner.user, "changed.csv", "sepal,petal,kind\nbig,2.0,a\nsmall,3,b\n")

    run = _run(owner, world, input=changed.pk)

    assert [(w["kind"], w["column"]) for w in run["warnings"]] == [("type_changed", "sepal")]


# --- run again, changed ------------------------------------------------------------------------


def test_rerun_keeps_what_the_old_run_asked_and_takes_changes(people, world):
    owner = people["owner"]
    first, second = world["models"]
    old = _run(owner, world, model=first.pk, version=1, params={"k": 5})

    same = owner.post(f"/api/v1/runs/{old['id']}/rerun/", {}, format="json").json()
    changed = owner.post(
        f"/api/v1/runs/{old['id']}/rerun/", {"model": second.pk, "params": {"k": 9}, "version": 2}, format="json"
    ).json()

    assert (same["trained_model"], same["version"], same["params"]) == (first.pk, 1, {"k": 5})
    assert (changed["trained_model"], changed["version"], changed["params"]) == (second.pk, 2, {"k": 9})
    assert changed["retry_of"] == old["id"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model": "nope"}, "model"),
        ({"version": 9}, "version"),
        ({"params": {"k": "x"}}, "params.k"),
        ({"input": 99999}, "input"),
    ],
)
def test_rerun_with_a_bad_change_is_a_400_naming_it(people, world, changes, field):
    owner = people["owner"]
    old = _run(owner, world)
    before = Run.objects.count()

    response = owner.post(f"/api/v1/runs/{old['id']}/rerun/", changes, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert Run.objects.count() == before


def test_rerun_of_another_users_run_is_404(people, world):
    old = _run(people["owner"], world)
    assert (
        people["viewer"].post(f"/api/v1/runs/{old['id']}/rerun/", {"params": {"k": 1}}, format="json").status_code
        == 404
    )
