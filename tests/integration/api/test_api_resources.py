"""Every resource the web pages show is reachable through /api/v1/, paginated, with the same rules
about who sees what: an owner, an admin, and an outsider who gets a 404.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db

CSV = b"name,value\nA,1\nB,5\nC,9\n"
PIPELINES = Path(__file__).resolve().parents[2] / "fixtures" / "pipelines"


@pytest.fixture
def alice_api(api_for, user):
    return api_for(user)


@pytest.fixture
def mallory_api(api_for, django_user_model):
    return api_for(django_user_model.objects.create_user(username="mallory", password="mallory-password-1"))


# --- /me/ -------------------------------------------------------------------------------------------


def test_me_describes_the_token_owner(api, alice_api, api_for, author):
    assert api.get("/api/v1/me/").json() == {
        "id": api.user.pk,
        "username": "root",
        "email": "",
        "first_name": "",
        "last_name": "",
        "role": "admin",
        "is_admin": True,
        "can_upload_pipelines": True,
        "runs": {"running": 0, "queued": 0, "max_running": 4, "max_queued": 100},
    }
    assert alice_api.get("/api/v1/me/").json()["role"] == "user"
    assert alice_api.get("/api/v1/me/").json()["can_upload_pipelines"] is False
    assert api_for(author).get("/api/v1/me/").json()["can_upload_pipelines"] is True


def test_me_without_credentials_is_401_with_error_body(client):
    response = client.get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided.", "errors": {}}


def test_unknown_token_is_401(client):
    response = client.get("/api/v1/me/", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


# --- pipelines --------------------------------------------------------------------------------------


def test_pipeline_list_is_paginated_and_filters_by_name(api, make_pipeline):
    for name in ("alpha", "beta", "gamma"):
        make_pipeline(name=name)
    body = api.get("/api/v1/pipelines/?page_size=2").json()
    assert body["count"] == 3
    assert [p["name"] for p in body["results"]] == ["alpha", "beta"]
    assert body["next"].endswith("/api/v1/pipelines/?page=2&page_size=2")
    assert [p["name"] for p in api.get("/api/v1/pipelines/?name=beta").json()["results"]] == ["beta"]


def test_pipeline_upload_then_new_version_through_versions_endpoint(api, upload_pipeline):
    created = upload_pipeline("client_count.py")
    assert created["name"] == "client_count"
    assert created["version"] == 1
    assert created["params"]["run"] == {
        "k": {"type": "integer", "default": 3},
        "label": {"type": "string", "default": "rows"},
    }
    control = (PIPELINES / "client_count.py").read_bytes()
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api.post(
        f"/api/v1/pipelines/{created['id']}/versions/",
        {"control": SimpleUploadedFile("renamed.py", control)},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "client_count"  # the pipeline's name, not the file's
    assert response.json()["version"] == 2
    versions = api.get(f"/api/v1/pipelines/{created['id']}/versions/").json()
    assert versions["count"] == 2
    assert [v["number"] for v in versions["results"]] == [2, 1]
    assert versions["results"][0]["control_filename"] == "renamed.py"


def test_plain_user_cannot_upload_a_version(alice_api, make_pipeline):
    pipeline = make_pipeline()
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = alice_api.post(
        f"/api/v1/pipelines/{pipeline.pk}/versions/",
        {"control": SimpleUploadedFile("x.py", b"def train(i,p=None): pass\n")},
        format="multipart",
    )
    assert response.status_code == 403
    assert response.json() == {"detail": "Uploading pipelines needs the author or admin role.", "errors": {}}


def test_trained_models_endpoint_lists_newest_first(api, make_pipeline, make_run):
    from mlopen.pipelines.models import TrainedModel

    pipeline = make_pipeline()
    for number in (1, 2):
        run = make_run(api.user, pipeline=pipeline, kind="train")
        TrainedModel.objects.create(
            pipeline=pipeline,
            version=pipeline.latest_version,
            run=run,
            number=number,
            artifact=f"models/{number}.pkl",
            size=10 * number,
            model_names=["m"],
        )
    body = api.get(f"/api/v1/pipelines/{pipeline.pk}/models/").json()
    assert [m["number"] for m in body["results"]] == [2, 1]
    assert body["results"][0]["version"] == 1
    detail = api.get(f"/api/v1/pipelines/{pipeline.pk}/").json()
    assert detail["current_model"]["number"] == 2
    assert [m["number"] for m in detail["trained_models"]] == [2, 1]


def test_unknown_pipeline_is_404_with_error_body(api):
    response = api.get("/api/v1/pipelines/424242/")
    assert response.status_code == 404
    assert set(response.json()) == {"detail", "errors"}


# --- datasets ---------------------------------------------------------------------------------------


def test_dataset_upload_detail_download_preview_delete(alice_api, upload_dataset):
    dataset = upload_dataset("scores.csv", CSV, client=alice_api)
    assert dataset["kind"] == "csv"
    assert dataset["size"] == len(CSV)
    assert alice_api.get(f"/api/v1/datasets/{dataset['id']}/").json()["name"] == "scores.csv"
    download = alice_api.get(f"/api/v1/datasets/{dataset['id']}/download/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == CSV
    assert alice_api.get(f"/api/v1/datasets/{dataset['id']}/preview/").json() == {
        "kind": "table",
        "columns": ["name", "value"],
        "rows": [["A", "1"], ["B", "5"], ["C", "9"]],
    }
    assert alice_api.get("/api/v1/datasets/").json()["count"] == 1
    assert alice_api.delete(f"/api/v1/datasets/{dataset['id']}/").status_code == 204
    assert alice_api.get(f"/api/v1/datasets/{dataset['id']}/").status_code == 404


def test_outsider_gets_404_for_someone_elses_dataset(alice_api, mallory_api, upload_dataset):
    dataset = upload_dataset("scores.csv", CSV, client=alice_api)
    for path in ("", "download/", "preview/"):
        assert mallory_api.get(f"/api/v1/datasets/{dataset['id']}/{path}").status_code == 404
    assert mallory_api.delete(f"/api/v1/datasets/{dataset['id']}/").status_code == 404
    assert mallory_api.get("/api/v1/datasets/").json()["count"] == 0


# --- runs ---------------------------------------------------------------------------------------------


def test_run_create_converts_text_params_and_queues(api, make_pipeline, upload_dataset):
    make_pipeline(name="counter", params_run=[{"name": "k", "type": "integer", "default": 3}])
    dataset = upload_dataset("scores.csv", CSV)
    response = api.post(
        "/api/v1/runs/", {"pipeline": "counter", "input": dataset["id"], "params": {"k": "5"}}, format="json"
    )
    assert response.status_code == 201, response.content
    run = response.json()
    assert response["Location"] == f"/api/v1/runs/{run['id']}/"
    assert (run["status"], run["kind"], run["params"], run["input"]) == ("queued", "run", {"k": 5}, dataset["id"])
    assert run["result"] is None and run["progress"] is None


def test_run_list_filters(api, alice_api, make_pipeline, make_run, user):
    first, second = make_pipeline(name="first"), make_pipeline(name="second")
    a = make_run(user, pipeline=first, status="succeeded")
    b = make_run(user, pipeline=second, status="failed")
    c = make_run(api.user, pipeline=second, status="queued", kind="train")

    def ids(query, client=api):
        response = client.get(f"/api/v1/runs/{query}")
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["results"]]

    assert ids("") == [c.pk, b.pk, a.pk]
    assert ids("?pipeline=second") == [c.pk, b.pk]
    assert ids(f"?pipeline={first.pk}") == [a.pk]
    assert ids("?kind=train") == [c.pk]
    assert ids("?status=failed") == [b.pk]
    assert ids("?status=failed,queued") == [c.pk, b.pk]
    assert ids("?user=alice") == [b.pk, a.pk]
    assert ids("?user=nobody") == []
    assert ids("", client=alice_api) == [b.pk, a.pk]  # a user sees only their own runs


def test_run_detail_includes_first_result_page(api, make_run):
    run = make_run(api.user)
    body = api.get(f"/api/v1/runs/{run.pk}/").json()
    assert body["status"] == "succeeded"
    assert body["result"]["columns"] == ["name", "score"]
    assert body["result"]["rows"] == 8
    assert body["result"]["data"][0] == ["row1", 1]
    assert body["metrics"] == {}


def test_result_pages(api, make_run):
    run = make_run(api.user)
    body = api.get(f"/api/v1/runs/{run.pk}/result/?page=2&page_size=3").json()
    assert (body["page"], body["pages"], body["rows"], body["page_size"]) == (2, 3, 8, 3)
    assert body["data"] == [["row4", 4], ["row5", 5], ["row6", 6]]
    ordered = api.get(f"/api/v1/runs/{run.pk}/result/?sort=1&order=desc&page_size=2").json()
    assert ordered["data"] == [["row7", 7], ["row6", 6]]
    past = api.get(f"/api/v1/runs/{run.pk}/result/?page=4&page_size=3")
    assert past.status_code == 404
    assert past.json()["detail"] == "Page 4 is past the last page (3)."


def test_result_download_csv_and_json(api, make_run):
    run = make_run(api.user)
    response = api.get(f"/api/v1/runs/{run.pk}/download/?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["name", "score"]
    assert rows[1] == ["row1", "1"]
    assert rows[-1] == ["'=SUM(A1)", "0"]  # formula-like cells are neutralized
    as_json = api.get(f"/api/v1/runs/{run.pk}/download/?format=json")
    assert as_json.status_code == 200
    assert json.loads(b"".join(as_json.streaming_content))["data"][0] == ["row1", 1]
    assert api.get(f"/api/v1/runs/{run.pk}/download/").status_code == 200  # csv by default


def test_result_without_a_table_has_pages_but_no_download(api, make_run):
    run = make_run(api.user, result={"text": "only words", "graphs": []})
    page = api.get(f"/api/v1/runs/{run.pk}/result/").json()
    assert (page["text"], page["rows"], page["data"], page["pages"]) == ("only words", None, None, 0)
    response = api.get(f"/api/v1/runs/{run.pk}/download/?format=csv")
    assert response.status_code == 404
    assert response.json()["detail"] == f"Run {run.pk}'s result has no table to download, only graphs or text."


def test_result_of_unfinished_run_is_404_saying_why(api, make_run):
    run = make_run(api.user, status="running")
    response = api.get(f"/api/v1/runs/{run.pk}/result/")
    assert response.status_code == 404
    assert response.json() == {"detail": f"Run {run.pk} has no result: it is running.", "errors": {}}
    download = api.get(f"/api/v1/runs/{run.pk}/download/?format=csv")
    assert download.status_code == 404
    assert download["Content-Type"] == "application/json"


def test_logs_tail_from_an_offset(api, make_run):
    run = make_run(api.user, status="running", log="line one\nline two\n")
    whole = api.get(f"/api/v1/runs/{run.pk}/logs/")
    assert whole.status_code == 200
    assert whole["Content-Type"] == "text/plain; charset=utf-8"
    assert whole.content == b"line one\nline two\n"
    assert whole["X-Log-Offset"] == "18"
    assert whole["X-Run-Status"] == "running"
    rest = api.get(f"/api/v1/runs/{run.pk}/logs/?offset=9")
    assert rest.content == b"line two\n"
    assert api.get(f"/api/v1/runs/{run.pk}/logs/?offset=500").content == b""


def test_cancel_queued_run_then_409(api, make_run):
    run = make_run(api.user, status="queued")
    response = api.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = api.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert again.status_code == 409
    assert again.json()["detail"] == f"Run {run.pk} already cancelled; only queued or running runs can be cancelled."


def test_rerun_queues_a_copy(api, make_run):
    run = make_run(api.user, status="failed", params={})
    response = api.post(f"/api/v1/runs/{run.pk}/rerun/")
    assert response.status_code == 201, response.content
    assert response.json()["retry_of"] == run.pk
    assert response.json()["status"] == "queued"


def test_outsider_gets_404_for_someone_elses_run(api, mallory_api, make_run):
    run = make_run(api.user)
    for method, path in [
        ("get", ""),
        ("get", "logs/"),
        ("get", "result/"),
        ("get", "download/"),
        ("post", "cancel/"),
        ("post", "rerun/"),
    ]:
        response = getattr(mallory_api, method)(f"/api/v1/runs/{run.pk}/{path}")
        assert response.status_code == 404, (path, response.content)
        assert set(response.json()) == {"detail", "errors"}
