"""GET /api/v1/datasets/<id>/stats/: a CSV's row count and per-column statistics, the same the
dataset's page shows; a clear 404 or 422 for a file that has none, and nothing for outsiders."""

from __future__ import annotations

import pytest

from mlopen.core import storage
from mlopen.datasets.services import store_dataset

pytestmark = pytest.mark.django_db

CSV = b"name,score,count,passed\nada,0.5,3,true\nbob,,5,false\ncy,1.5,,true\nada,2.5,7,true\n"


def stored(owner, content=CSV, name="scores.csv"):
    return store_dataset(owner=owner, name=name, filename=name, chunks=[content])


def test_a_csvs_stats_are_its_rows_and_columns(api):
    dataset = stored(api.user)

    response = api.get(f"/api/v1/datasets/{dataset.pk}/stats/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["rows"], body["rows_exact"], body["complete"], body["sampled_rows"]) == (4, True, True, 4)
    columns = {column["name"]: column for column in body["columns"]}
    assert columns["score"] == {
        "name": "score", "type": "number", "missing": 1, "distinct": 3, "min": 0.5, "max": 2.5, "mean": 1.5,
    }  # fmt: skip
    assert columns["name"]["min"] == "ada" and columns["passed"]["mean"] == 0.75


def test_infinite_values_are_shown_as_no_value_not_as_invalid_json(api):
    dataset = stored(api.user, b"x\n1\ninf\n-inf\n", name="inf.csv")

    response = api.get(f"/api/v1/datasets/{dataset.pk}/stats/")

    assert response.status_code == 200, response.content
    [column] = response.json()["columns"]
    assert (column["type"], column["min"], column["max"], column["mean"]) == ("number", None, None, None)


def test_a_file_that_is_not_a_csv_is_a_404_saying_why(api):
    dataset = stored(api.user, b"just words\n", name="notes.txt")

    response = api.get(f"/api/v1/datasets/{dataset.pk}/stats/")

    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"Statistics are computed for CSV tables only; 'notes.txt' is not one "
        f"(GET /api/v1/datasets/{dataset.pk}/preview/ shows what it holds)."
    )


def test_a_csv_that_cannot_be_parsed_is_a_422_saying_why(api):
    dataset = stored(api.user, b'a,b\n"1,2\n', name="broken.csv")

    response = api.get(f"/api/v1/datasets/{dataset.pk}/stats/")

    assert response.status_code == 422
    assert response.json()["detail"].startswith("The statistics could not be computed")


def test_a_csv_whose_file_is_gone_is_a_404_saying_so(api):
    dataset = stored(api.user)
    storage.delete_file(dataset.file)

    response = api.get(f"/api/v1/datasets/{dataset.pk}/stats/")

    assert response.status_code == 404
    assert "missing from storage" in response.json()["detail"]


def test_an_outsider_gets_no_stats_of_someone_elses_dataset(api, api_for, user):
    dataset = stored(api.user)

    assert api_for(user).get(f"/api/v1/datasets/{dataset.pk}/stats/").status_code == 404


def test_the_python_client_reads_a_datasets_stats(live_server, author):
    from mlopen.client import Client
    from mlopen.client.client import NotFound
    from mlopen.core.tokens import create_token

    token = create_token(author, "stats")[1]
    table, text = stored(author), stored(author, b"words\n", name="notes.txt")
    with Client(live_server.url, token) as client:
        stats = client.dataset_stats(table.pk)
        with pytest.raises(NotFound, match="Statistics are computed for CSV tables only"):
            client.dataset_stats(text.pk)

    assert stats["rows"] == 4 and [c["name"] for c in stats["columns"]] == ["name", "score", "count", "passed"]
