"""Runs you can find, delete and compare through /api/v1/runs/: name, notes and tags (PATCH), the
list's filters, ordering and columns, deleting one or many, and comparing 2 to 10 runs, each with
its owner, a collaborator the run is shared with, an outsider (404) and bad input (400)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mlopen.core import storage
from mlopen.pipelines.models import TrainedModel
from mlopen.runs.models import Run, RunMetric, RunTag

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_api(api_for, user):
    return api_for(user)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-password-1")


@pytest.fixture
def bob_api(api_for, bob):
    return api_for(bob)


@pytest.fixture
def mallory_api(api_for, django_user_model):
    return api_for(django_user_model.objects.create_user(username="mallory", password="mallory-password-1"))


def shared(run):
    """Shared with every logged-in user: bob, the collaborator, sees it (and so would mallory: use an
    unshared run for the outsider's 404)."""
    Run.objects.filter(pk=run.pk).update(shared_with_all=True)
    return run


def log_metric(run, name, *values):
    for step, value in enumerate(values, start=1):
        RunMetric.objects.create(run=run, name=name, step=step, value=value)


def ids_of(response):
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


# --- name, notes and tags ---------------------------------------------------------------------------


def test_owner_names_notes_and_tags_a_run(alice_api, make_run, user):
    run = make_run(user)
    response = alice_api.patch(
        f"/api/v1/runs/{run.pk}/",
        {"name": "baseline", "notes": "# First try\n\n*lr* 0.1", "tags": ["sweep", "baseline", "sweep"]},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["display_name"], body["tags"]) == ("baseline", "baseline", ["baseline", "sweep"])
    assert body["notes"] == "# First try\n\n*lr* 0.1"
    run.refresh_from_db()
    assert run.name == "baseline"
    assert sorted(RunTag.objects.filter(run=run).values_list("name", flat=True)) == ["baseline", "sweep"]
    # Tags given again replace the set; fields left out stay as they were.
    response = alice_api.patch(f"/api/v1/runs/{run.pk}/", {"tags": ["final"]}, format="json")
    assert response.json()["tags"] == ["final"]
    assert response.json()["name"] == "baseline"


def test_unnamed_run_shows_pipeline_and_id(alice_api, make_run, make_pipeline, user):
    run = make_run(user, pipeline=make_pipeline(name="iris"))
    body = alice_api.get(f"/api/v1/runs/{run.pk}/").json()
    assert (body["name"], body["display_name"], body["tags"]) == ("", f"iris #{run.pk}", [])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tags": ["x" * 65]}, "tags"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"tags": "not-a-list"}, "tags"),
        ({"tags": [0]}, "tags"),
        ({"name": 5}, "name"),
        ({"tags": ["a,b"]}, "tags"),
        ({"name": "n" * 201}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"notes": "x" * 20_001}, "notes"),
        ({"status": "succeeded"}, "status"),
        ({"owner": 1}, "owner"),
        ({"name": "ok", "params": {"k": 1}}, "params"),
    ],
)
def test_bad_labels_are_400_naming_the_field_and_change_nothing(alice_api, make_run, user, body, field):
    run = make_run(user, status="failed", params={"k": 0})
    RunTag.objects.create(run=run, name="kept")
    response = alice_api.patch(f"/api/v1/runs/{run.pk}/", body, format="json")
    assert response.status_code == 400, response.content
    assert [key.split(".")[0] for key in response.json()["errors"]] == [field]
    run.refresh_from_db()
    assert (run.name, run.notes, run.status, run.params) == ("", "", "failed", {"k": 0})
    assert list(RunTag.objects.filter(run=run).values_list("name", flat=True)) == ["kept"]


def test_only_owner_or_admin_may_change_labels(api, alice_api, bob_api, mallory_api, make_run, user):
    run = shared(make_run(user))
    assert bob_api.get(f"/api/v1/runs/{run.pk}/").status_code == 200  # the collaborator sees it
    assert bob_api.patch(f"/api/v1/runs/{run.pk}/", {"name": "mine"}, format="json").status_code == 404
    private = make_run(user)
    assert mallory_api.patch(f"/api/v1/runs/{private.pk}/", {"name": "x"}, format="json").status_code == 404
    assert api.patch(f"/api/v1/runs/{run.pk}/", {"name": "by admin"}, format="json").status_code == 200
    assert Run.objects.get(pk=private.pk).name == ""
    assert Run.objects.get(pk=run.pk).name == "by admin"
    assert alice_api.put(f"/api/v1/runs/{run.pk}/", {"name": "x"}, format="json").status_code == 405


# --- the list ---------------------------------------------------------------------------------------


def test_list_finds_runs_by_text_and_tags(alice_api, make_run, make_pipeline, user):
    iris, wine = make_pipeline(name="iris"), make_pipeline(name="wine")
    a = make_run(user, pipeline=iris)
    b = make_run(user, pipeline=wine)
    c = make_run(user, pipeline=wine)
    alice_api.patch(f"/api/v1/runs/{a.pk}/", {"name": "Baseline", "tags": ["base", "v1"]}, format="json")
    alice_api.patch(f"/api/v1/runs/{b.pk}/", {"notes": "tried a BASELINE trick", "tags": ["v1"]}, format="json")
    Run.objects.filter(pk=c.pk).update(input_name="baseline.csv")
    assert ids_of(alice_api.get("/api/v1/runs/?q=baseline")) == [c.pk, b.pk, a.pk]
    assert ids_of(alice_api.get("/api/v1/runs/?q=wine")) == [c.pk, b.pk]
    assert ids_of(alice_api.get("/api/v1/runs/?tag=v1")) == [b.pk, a.pk]
    assert ids_of(alice_api.get("/api/v1/runs/?tag=v1&tag=base")) == [a.pk]
    assert ids_of(alice_api.get("/api/v1/runs/?tag=v1,base")) == [a.pk]
    assert ids_of(alice_api.get("/api/v1/runs/?tag=nothing")) == []


def test_list_filters_by_version_kind_user_and_dates(api, alice_api, make_run, make_pipeline, user):
    from mlopen.pipelines.models import PipelineVersion

    pipeline = make_pipeline(name="iris")
    old = make_run(user, pipeline=pipeline, kind="train")
    v2 = PipelineVersion.objects.create(pipeline=pipeline, number=2, control_filename="iris.py", folder="x")
    new = make_run(user, pipeline=pipeline)
    Run.objects.filter(pk=new.pk).update(version=v2, created_at="2026-03-10T12:00:00Z")
    Run.objects.filter(pk=old.pk).update(created_at="2026-03-01T08:00:00Z")
    assert ids_of(alice_api.get("/api/v1/runs/?pipeline=iris&version=2")) == [new.pk]
    assert ids_of(alice_api.get("/api/v1/runs/?version=v1")) == [old.pk]
    assert ids_of(alice_api.get("/api/v1/runs/?kind=train")) == [old.pk]
    assert ids_of(alice_api.get("/api/v1/runs/?created_after=2026-03-05")) == [new.pk]
    assert ids_of(alice_api.get("/api/v1/runs/?created_before=2026-03-01")) == [old.pk]  # that whole day
    assert ids_of(alice_api.get("/api/v1/runs/?created_before=2026-03-01T07:00:00Z")) == []
    assert ids_of(api.get("/api/v1/runs/?user=alice&kind=run&status=succeeded")) == [new.pk]


@pytest.mark.parametrize(
    "query",
    [
        "created_after=yesterday",
        "created_before=2026-13-01",
        "version=latest",
        "version=0",
        "kind=fit",
        "status=done",
        "pipeline=nosuch",
        "ordering=name",
        "ordering=metric.",
        "columns=lr",
        "columns=param.",
        "q=" + "x" * 201,
    ],
)
def test_bad_list_parameter_is_400_naming_it(alice_api, make_run, user, query):
    make_run(user)
    response = alice_api.get(f"/api/v1/runs/?{query}")
    assert response.status_code == 400, response.content
    assert query.split("=")[0] in response.json()["errors"]


def test_ordering_by_duration_and_metric(alice_api, make_run, user):
    from datetime import timedelta

    runs = [make_run(user) for _ in range(3)]
    for run, seconds in zip(runs, (30, 10, 20), strict=True):
        Run.objects.filter(pk=run.pk).update(finished_at=run.started_at + timedelta(seconds=seconds))
    log_metric(runs[0], "accuracy", 0.5, 0.7)  # last 0.7
    log_metric(runs[1], "accuracy", 0.95, 0.9)  # last 0.9
    a, b, c = (run.pk for run in runs)
    assert ids_of(alice_api.get("/api/v1/runs/?ordering=duration")) == [b, c, a]
    assert ids_of(alice_api.get("/api/v1/runs/?ordering=-duration")) == [a, c, b]
    assert ids_of(alice_api.get("/api/v1/runs/?ordering=-metric.accuracy")) == [b, a, c]  # no value: last
    assert ids_of(alice_api.get("/api/v1/runs/?ordering=metric.accuracy")) == [a, b, c]
    assert ids_of(alice_api.get("/api/v1/runs/?ordering=created")) == [a, b, c]


def test_ordering_on_a_metric_no_visible_run_logged_is_400(alice_api, make_run, user, admin_user):
    make_run(user)
    log_metric(make_run(admin_user), "secret_loss", 1.0)  # alice cannot see this run
    response = alice_api.get("/api/v1/runs/?ordering=-metric.secret_loss")
    assert response.status_code == 400
    assert "ordering" in response.json()["errors"]


def test_list_columns_show_params_and_last_metric_values(alice_api, make_run, user):
    run = make_run(user, params={"lr": 0.1, "epochs": 3})
    other = make_run(user, params={"lr": 0.2})
    log_metric(run, "accuracy", 0.6, 0.8)
    log_metric(run, "loss", 1.0, float("nan"))
    body = alice_api.get("/api/v1/runs/?columns=param.lr,param.epochs,metric.accuracy,metric.loss").json()
    rows = {row["id"]: row["columns"] for row in body["results"]}
    assert rows[run.pk] == {"param.lr": 0.1, "param.epochs": 3, "metric.accuracy": 0.8, "metric.loss": None}
    assert rows[other.pk] == {"param.lr": 0.2, "param.epochs": None, "metric.accuracy": None, "metric.loss": None}
    assert alice_api.get("/api/v1/runs/").json()["results"][0]["columns"] == {}


def test_list_query_count_does_not_grow_with_rows(alice_api, make_run, make_pipeline, user):
    pipeline = make_pipeline(name="iris")
    query = "/api/v1/runs/?q=iris&columns=param.lr,metric.accuracy&ordering=-metric.accuracy"

    def count_for(total):
        while Run.objects.count() < total:
            run = make_run(user, pipeline=pipeline, params={"lr": 0.1})
            log_metric(run, "accuracy", 0.5)
            RunTag.objects.create(run=run, name="t")
        with CaptureQueriesContext(connection) as queries:
            assert len(ids_of(alice_api.get(query))) == total
        return len(queries)

    alice_api.get("/api/v1/me/")  # the token's last use is written once a minute: not in either count
    assert count_for(2) == count_for(12)


def test_collaborator_finds_shared_runs_outsider_does_not(bob_api, mallory_api, make_run, user):
    run = make_run(user)
    assert ids_of(bob_api.get("/api/v1/runs/")) == []
    shared(run)
    assert ids_of(bob_api.get("/api/v1/runs/?user=alice")) == [run.pk]


# --- delete -----------------------------------------------------------------------------------------


def test_owner_deletes_a_run_with_its_result_metrics_and_tags(
    alice_api, make_run, user, django_capture_on_commit_callbacks
):
    run = make_run(user)
    log_metric(run, "accuracy", 0.9)
    RunTag.objects.create(run=run, name="gone")
    folder = run.result_folder
    assert storage.exists(f"{folder}/meta.json") or storage.local_folder(folder).exists()
    with django_capture_on_commit_callbacks(execute=True):  # the folder goes once the rows are gone
        response = alice_api.delete(f"/api/v1/runs/{run.pk}/")
    assert response.status_code == 204, response.content
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not RunMetric.objects.filter(run_id=run.pk).exists()
    assert not RunTag.objects.filter(run_id=run.pk).exists()
    assert not storage.local_path(folder).exists()


def test_delete_by_collaborator_or_outsider_is_404_admin_may(api, bob_api, mallory_api, make_run, user):
    run = shared(make_run(user))
    private = make_run(user)
    assert bob_api.delete(f"/api/v1/runs/{run.pk}/").status_code == 404
    assert mallory_api.delete(f"/api/v1/runs/{private.pk}/").status_code == 404
    assert Run.objects.filter(pk__in=[run.pk, private.pk]).count() == 2
    assert api.delete(f"/api/v1/runs/{private.pk}/").status_code == 204


def test_delete_of_a_running_run_is_409_and_keeps_it(alice_api, make_run, user):
    run = make_run(user, status="running")
    response = alice_api.delete(f"/api/v1/runs/{run.pk}/")
    assert response.status_code == 409
    assert "cancel" in response.json()["detail"]
    assert Run.objects.filter(pk=run.pk).exists()


def test_deleting_a_training_keeps_its_model_for_the_runs_that_use_it(alice_api, make_run, user):
    train = make_run(user, kind="train")
    model = TrainedModel.objects.create(
        pipeline=train.pipeline, version=train.version, run=train, number=1, artifact="models/x.pkl"
    )
    user_of_model = make_run(user, pipeline=train.pipeline)
    Run.objects.filter(pk=user_of_model.pk).update(trained_model=model)
    assert alice_api.delete(f"/api/v1/runs/{train.pk}/").status_code == 204
    model.refresh_from_db()
    assert model.run_id is None
    assert Run.objects.get(pk=user_of_model.pk).trained_model_id == model.pk


def test_bulk_delete_is_all_or_nothing(api, alice_api, bob_api, make_run, user, bob):
    mine = [make_run(user) for _ in range(3)]
    running = make_run(user, status="running")
    theirs = make_run(bob)
    ids = [run.pk for run in mine]
    url = "/api/v1/runs/bulk-delete/"
    assert alice_api.post(url, {"ids": [*ids, theirs.pk]}, format="json").status_code == 404
    assert alice_api.post(url, {"ids": [*ids, running.pk]}, format="json").status_code == 409
    assert alice_api.post(url, {"ids": [*ids, 10**12]}, format="json").status_code == 404
    assert Run.objects.filter(pk__in=ids).count() == 3
    shared(mine[0])
    assert bob_api.post(url, {"ids": [mine[0].pk]}, format="json").status_code == 404  # collaborator
    response = alice_api.post(url, {"ids": ids}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"deleted": 3}
    assert not Run.objects.filter(pk__in=ids).exists()
    assert api.post(url, {"ids": [theirs.pk]}, format="json").json() == {"deleted": 1}  # admins may


@pytest.mark.parametrize("body", [{}, {"ids": []}, {"ids": ["x"]}, {"ids": list(range(1, 502))}, [1, 2]])
def test_bulk_delete_bad_body_is_400_naming_ids(alice_api, body):
    response = alice_api.post("/api/v1/runs/bulk-delete/", body, format="json")
    assert response.status_code == 400
    assert [key.split(".")[0] for key in response.json()["errors"]] == ["ids"]


# --- compare ----------------------------------------------------------------------------------------


def test_compare_three_runs(alice_api, bob_api, make_run, make_pipeline, user):
    pipeline = make_pipeline(name="iris")
    a = make_run(user, pipeline=pipeline, params={"lr": 0.1, "epochs": 3})
    b = make_run(user, pipeline=pipeline, params={"lr": 0.2, "epochs": 3})
    c = shared(make_run(user, pipeline=pipeline, params={"lr": 0.1, "epochs": 3, "seed": 7}))
    log_metric(a, "accuracy", 0.5, 0.9, 0.8)
    log_metric(b, "accuracy", 0.7)
    log_metric(c, "loss", 2.0, 1.0)
    response = alice_api.get(f"/api/v1/runs/compare/?ids={a.pk},{b.pk},{c.pk}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert [run["id"] for run in body["runs"]] == [a.pk, b.pk, c.pk]
    assert body["params"] == {"epochs": [3, 3, 3], "lr": [0.1, 0.2, 0.1], "seed": [None, None, 7]}
    assert body["differing_params"] == ["lr", "seed"]
    assert body["metrics"] == {
        "accuracy": [{"last": 0.8, "min": 0.5, "max": 0.9}, {"last": 0.7, "min": 0.7, "max": 0.7}, None],
        "loss": [None, None, {"last": 1.0, "min": 1.0, "max": 2.0}],
    }
    # bob sees c only: a compare with runs he cannot see is a 404 for the whole request.
    assert bob_api.get(f"/api/v1/runs/compare/?ids={a.pk},{c.pk}").status_code == 404


@pytest.mark.parametrize("ids", ["", "1", "1,x", "1,2,3,4,5,6,7,8,9,10,11", "1,-2", "1,1"])
def test_compare_bad_ids_is_400_naming_ids(alice_api, ids):
    response = alice_api.get(f"/api/v1/runs/compare/?ids={ids}")
    assert response.status_code == 400, response.content
    assert "ids" in response.json()["errors"]


def test_compare_with_an_unknown_or_outsiders_run_is_404(alice_api, mallory_api, make_run, user):
    a, b = make_run(user), make_run(user)
    assert alice_api.get(f"/api/v1/runs/compare/?ids={a.pk},{10**12}").status_code == 404
    assert mallory_api.get(f"/api/v1/runs/compare/?ids={a.pk},{b.pk}").status_code == 404


def test_labels_and_rerun_take_json_only(alice_api, make_run, user):
    run = make_run(user)
    response = alice_api.patch(f"/api/v1/runs/{run.pk}/", "tags=a", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert list(RunTag.objects.filter(run=run)) == []
    # The schema documents JSON only for them, so generated clients never send a form.
    schema = alice_api.get("/api/schema/?format=json").json()
    assert list(schema["paths"]["/api/v1/runs/{id}/"]["patch"]["requestBody"]["content"]) == ["application/json"]
