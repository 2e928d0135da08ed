"""The runs list finds runs (text, tag, filters kept in the URL, ordering, columns), the run page edits
a run's name, notes and tags inline, runs are deleted after a confirmation, and the compare page shows
2 to 10 runs side by side; each with the owner, a collaborator and an outsider (404)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mlopen.runs.models import Run, RunMetric, RunTag

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-password-1")


def log_metric(run, name, *values):
    for step, value in enumerate(values, start=1):
        RunMetric.objects.create(run=run, name=name, step=step, value=value)


def listed(response) -> list[int]:
    return [row["run"].pk for row in response.context["rows"]]


# --- the list ---------------------------------------------------------------------------------------


def test_list_finds_by_text_and_tag_and_keeps_filters_in_the_form(alice_client, make_run, make_pipeline, user):
    pipeline = make_pipeline()
    a = make_run(user, pipeline, name="baseline knn", params={"k": 3})
    b = make_run(user, pipeline, notes="better than the baseline", params={"k": 5})
    c = make_run(user, pipeline)
    RunTag.objects.create(run=a, name="sweep")
    RunTag.objects.create(run=c, name="sweep")
    response = alice_client.get("/runs/?q=baseline")
    assert listed(response) == [b.pk, a.pk]
    assert 'value="baseline"' in response.content.decode()
    assert listed(alice_client.get("/runs/?tag=sweep")) == [c.pk, a.pk]
    page = alice_client.get("/runs/?tag=sweep&columns=param.k").content.decode()
    assert "baseline knn" in page and f"iris #{c.pk}" in page  # a name, or pipeline and id
    assert 'class="badge rounded-pill text-bg-info text-decoration-none ms-1 run-tag" href="?tag=sweep"' in page


def test_list_orders_by_a_metric_column(alice_client, make_run, make_pipeline, user):
    pipeline = make_pipeline()
    low, high = make_run(user, pipeline), make_run(user, pipeline)
    log_metric(low, "accuracy", 0.9, 0.6)
    log_metric(high, "accuracy", 0.5, 0.8)
    response = alice_client.get("/runs/?columns=metric.accuracy&ordering=-metric.accuracy")
    assert listed(response) == [high.pk, low.pk]
    assert [row["columns"] for row in response.context["rows"]] == [[0.8], [0.6]]
    assert "accuracy: highest first" in response.content.decode()


def test_list_with_a_bad_filter_is_400_saying_which(alice_client, make_run, make_pipeline, user):
    make_run(user, make_pipeline())
    response = alice_client.get("/runs/?created_after=last-week")
    assert response.status_code == 400
    assert "created_after" in response.context["errors"]
    assert response.context["rows"] == []


def test_list_query_count_does_not_grow_with_rows(alice_client, make_run, make_pipeline, user):
    pipeline = make_pipeline()
    url = "/runs/?q=iris&columns=param.k,metric.accuracy&ordering=-metric.accuracy"

    def count_for(total):
        while Run.objects.count() < total:
            run = make_run(user, pipeline, params={"k": 3})
            log_metric(run, "accuracy", 0.7)
            RunTag.objects.create(run=run, name="t")
        with CaptureQueriesContext(connection) as queries:
            assert len(listed(alice_client.get(url))) == total
        return len(queries)

    assert count_for(2) == count_for(20)


def test_outsider_does_not_find_someone_elses_runs(client_for, outsider, make_run, make_pipeline, user):
    run = make_run(user, make_pipeline(), name="secret plan")
    assert listed(client_for(outsider).get("/runs/?q=secret")) == []
    Run.objects.filter(pk=run.pk).update(shared_with_all=True)
    assert listed(client_for(outsider).get("/runs/?q=secret")) == [run.pk]


# --- labels -----------------------------------------------------------------------------------------


def test_owner_edits_labels_inline(alice_client, make_run, make_pipeline, user):
    run = make_run(user, make_pipeline())
    form = alice_client.get(f"/runs/{run.pk}/labels/edit/", HTTP_HX_REQUEST="true")
    assert form.status_code == 200 and 'name="tags"' in form.content.decode()
    response = alice_client.post(
        f"/runs/{run.pk}/labels/edit/",
        {
            "name": "best so far",
            "tags": "final, knn",
            "notes": "**k=3** <script>x()</script> [a](javascript:x()) <img src=x onerror=x()> [b](https://e.org)",
        },
        HTTP_HX_REQUEST="true",
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="run-name">best so far<' in body
    assert "<strong>k=3</strong>" in body and "<script>" not in body
    assert 'href="javascript' not in body and "<img" not in body
    assert '<a href="https://e.org" rel="noopener noreferrer nofollow">b</a>' in body
    assert sorted(RunTag.objects.filter(run=run).values_list("name", flat=True)) == ["final", "knn"]
    detail = alice_client.get(f"/runs/{run.pk}/").content.decode()
    assert "best so far" in detail and "<strong>k=3</strong>" in detail


def test_bad_labels_show_the_form_again_with_the_error(alice_client, make_run, make_pipeline, user):
    run = make_run(user, make_pipeline(), name="kept")
    response = alice_client.post(
        f"/runs/{run.pk}/labels/edit/", {"name": "new", "tags": "x" * 65, "notes": ""}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 400
    assert "at most 64 characters" in response.content.decode()
    assert Run.objects.get(pk=run.pk).name == "kept"


def test_collaborator_sees_labels_but_cannot_edit(client_for, bob, make_run, make_pipeline, user):
    run = make_run(user, make_pipeline(), name="shared one", shared_with_all=True)
    bob_client = client_for(bob)
    assert "shared one" in bob_client.get(f"/runs/{run.pk}/labels/").content.decode()
    assert 'id="edit-labels"' not in bob_client.get(f"/runs/{run.pk}/").content.decode()
    assert bob_client.post(f"/runs/{run.pk}/labels/edit/", {"name": "mine"}).status_code == 404


def test_outsider_gets_404_for_labels(client_for, outsider, make_run, make_pipeline, user):
    run = make_run(user, make_pipeline())
    assert client_for(outsider).get(f"/runs/{run.pk}/labels/").status_code == 404
    assert client_for(outsider).get(f"/runs/{run.pk}/labels/edit/").status_code == 404


# --- delete -----------------------------------------------------------------------------------------


def test_bulk_delete_asks_then_deletes(alice_client, make_run, make_pipeline, user):
    pipeline = make_pipeline()
    runs = [make_run(user, pipeline, result={"columns": ["a"], "data": [[1]]}) for _ in range(2)]
    ids = [run.pk for run in runs]
    confirm = alice_client.post("/runs/delete/", {"ids": ids, "next": "/runs/?tag=x"})
    assert confirm.status_code == 200 and "Delete 2 runs?" in confirm.content.decode()
    assert Run.objects.filter(pk__in=ids).count() == 2
    response = alice_client.post(
        "/runs/delete/", {"ids": ",".join(map(str, ids)), "confirm": "yes", "next": "/runs/?tag=x"}
    )
    assert response.status_code == 302 and response["Location"] == "/runs/?tag=x"
    assert not Run.objects.filter(pk__in=ids).exists()


def test_delete_refuses_a_running_run(alice_client, make_run, make_pipeline, user):
    run = make_run(user, make_pipeline(), status="running")
    page = alice_client.post("/runs/delete/", {"ids": run.pk}).content.decode()
    assert "still queued or running" in page
    alice_client.post("/runs/delete/", {"ids": run.pk, "confirm": "yes"})
    assert Run.objects.filter(pk=run.pk).exists()


def test_collaborator_and_outsider_cannot_delete(client_for, bob, outsider, make_run, make_pipeline, user):
    run = make_run(user, make_pipeline(), shared_with_all=True)
    assert client_for(bob).post("/runs/delete/", {"ids": run.pk, "confirm": "yes"}).status_code == 404
    assert client_for(outsider).post("/runs/delete/", {"ids": run.pk, "confirm": "yes"}).status_code == 404
    assert Run.objects.filter(pk=run.pk).exists()


# --- compare ----------------------------------------------------------------------------------------


def test_compare_page_highlights_differing_params_and_overlays_metrics(alice_client, make_run, make_pipeline, user):
    pipeline = make_pipeline()
    a = make_run(user, pipeline, params={"k": 3, "seed": 1}, result={"columns": ["x"], "data": [[1], [2]]})
    b = make_run(user, pipeline, params={"k": 5, "seed": 1})
    log_metric(a, "accuracy", 0.5, 0.7)
    log_metric(b, "accuracy", 0.6)
    response = alice_client.get(f"/runs/compare/?ids={a.pk},{b.pk}")
    assert response.status_code == 200
    rows = {row["name"]: row["differs"] for row in response.context["param_rows"]}
    assert rows == {"k": True, "seed": False}
    (chart,) = response.context["charts"]
    assert [trace["y"] for trace in chart["figure"]["data"]] == [[0.5, 0.7], [0.6]]
    assert 'class="table-warning param-differs"' in response.content.decode()


def test_compare_from_checkboxes_redirects_to_the_short_url(alice_client):
    response = alice_client.get("/runs/compare/?csrfmiddlewaretoken=x&ids=4&ids=7")
    assert response.status_code == 302 and response["Location"] == "/runs/compare/?ids=4,7"


def test_compare_needs_two_to_ten_visible_runs(alice_client, client_for, outsider, make_run, make_pipeline, user):
    a, b = make_run(user, make_pipeline()), make_run(user, make_pipeline(name="wine"))
    assert alice_client.get(f"/runs/compare/?ids={a.pk}").status_code == 400
    assert client_for(outsider).get(f"/runs/compare/?ids={a.pk},{b.pk}").status_code == 404
