"""Result tables through DuckDB: filters, search, sorting, and streamed CSV / JSON / NDJSON downloads;
every bad parameter a 400 or 404 naming it, whatever the pipeline named its columns."""

from __future__ import annotations

import csv
import io
import json

import pytest

HOSTILE = ['a"; DROP TABLE runs_run; --', "it's", "x\x00y", "c0", "file_row_number"]


@pytest.fixture
def scores(api, make_run):
    data = [[f"row{i}", i, i % 2 == 0, None if i == 3 else i / 2] for i in range(1, 11)]
    return make_run(api.user, result={"columns": ["name", "score", "even", "half"], "data": data})


def _page(api, run, query: str):
    return api.get(f"/api/v1/runs/{run.pk}/result/?{query}")


def _names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row[0] for row in response.json()["data"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("filter=score:eq:3", ["row3"]),
        ("filter=score:ne:3&page_size=3", ["row1", "row2", "row4"]),
        ("filter=score:lt:3", ["row1", "row2"]),
        ("filter=score:le:2", ["row1", "row2"]),
        ("filter=score:gt:8", ["row9", "row10"]),
        ("filter=1:ge:9.5", ["row10"]),  # a column by its index
        ("filter=name:contains:W1", ["row1", "row10"]),  # ignoring case
        ("filter=even:eq:true&filter=score:lt:5", ["row2", "row4"]),  # all filters hold
        ("filter=half:contains:.5&sort=1&order=desc&page_size=2", ["row9", "row7"]),
        ("search=ROW1", ["row1", "row10"]),
        ("sort=3&order=asc&page_size=3", ["row1", "row2", "row4"]),  # the empty cell goes last
    ],
)
def test_result_pages_are_filtered_searched_and_sorted(api, scores, query, expected):
    assert _names(_page(api, scores, query)) == expected


def test_a_filtered_page_counts_the_rows_kept(api, scores):
    body = _page(api, scores, "filter=score:gt:4&page_size=2&page=3").json()
    assert (body["rows"], body["pages"], body["page"]) == (6, 3, 3)
    assert [row[0] for row in body["data"]] == ["row9", "row10"]


@pytest.mark.parametrize(
    ("query", "parameter", "message"),
    [
        ("filter=nope:eq:1", "filter", "The table has no column 'nope'"),
        ("filter=score:like:1", "filter", "Unknown operator 'like': use one of eq, ne, lt, le, gt, ge, contains."),
        ("filter=score:gt:many", "filter", "Column 'score' holds numbers; 'many' is not one."),
        ("filter=even:eq:maybe", "filter", "Column 'even' holds true or false, not 'maybe'."),
        ("filter=score", "filter", "Write a filter as column:op:value, got 'score'."),
        ("sort=9", "sort", "The table has 4 columns (0 to 3)."),
        ("sort=x", "sort", "Must be a whole number"),
        ("order=up", "order", "Use asc or desc"),
        ("search=" + "x" * 201, "search", "At most 200 characters."),
        ("&".join(["filter=score:gt:1"] * 11), "filter", "At most 10 filters, got 11."),
    ],
)
def test_a_bad_table_parameter_is_a_400_naming_it(api, scores, query, parameter, message):
    for path in ("result/", "download/?format=json&"):
        joiner = "" if path.endswith("&") else "?"
        response = api.get(f"/api/v1/runs/{scores.pk}/{path}{joiner}{query}")
        assert response.status_code == 400, (path, response.content)
        assert message in str(response.json()["errors"][parameter]), response.json()


def test_a_page_past_the_end_of_the_filtered_rows_is_a_404(api, scores):
    response = _page(api, scores, "filter=score:gt:8&page=2")
    assert response.status_code == 404
    assert response.json()["detail"] == "Page 2 is past the last page (1)."


def test_hostile_column_names_are_data_never_sql(api, make_run):
    run = make_run(api.user, result={"columns": HOSTILE, "data": [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]})
    for index, name in enumerate(HOSTILE):
        if "\x00" in name:
            continue  # not a query parameter a client can send; reachable by index
        response = api.get(f"/api/v1/runs/{run.pk}/result/", {"filter": f"{name}:gt:5", "sort": index})
        assert response.status_code == 200, (name, response.content)
        assert response.json()["data"] == [[6, 7, 8, 9, 10]]
    by_index = api.get(f"/api/v1/runs/{run.pk}/result/?filter=2:eq:3").json()
    assert by_index["data"] == [[1, 2, 3, 4, 5]]
    lines = b"".join(api.get(f"/api/v1/runs/{run.pk}/download/?format=ndjson").streaming_content).splitlines()
    assert json.loads(lines[1]) == dict(zip(HOSTILE, [6, 7, 8, 9, 10], strict=True))


def test_downloads_stream_csv_json_and_ndjson_filtered_and_sorted(api, scores):
    base = f"/api/v1/runs/{scores.pk}/download/?filter=score:ge:8&sort=1&order=desc"
    as_csv = api.get(base + "&format=csv")
    assert as_csv["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(b"".join(as_csv.streaming_content).decode())))
    assert rows == [
        ["name", "score", "even", "half"],
        ["row10", "10", "True", "5.0"],
        ["row9", "9", "False", "4.5"],
        ["row8", "8", "True", "4.0"],
    ]

    as_json = api.get(base + "&format=json")
    assert as_json["Content-Type"] == "application/json"
    assert json.loads(b"".join(as_json.streaming_content)) == {
        "columns": ["name", "score", "even", "half"],
        "data": [["row10", 10, True, 5.0], ["row9", 9, False, 4.5], ["row8", 8, True, 4.0]],
    }

    as_ndjson = api.get(base + "&format=ndjson")
    assert as_ndjson["Content-Type"] == "application/x-ndjson"
    assert as_ndjson["Content-Disposition"] == f'attachment; filename="run-{scores.pk}.ndjson"'
    lines = b"".join(as_ndjson.streaming_content).decode().splitlines()
    assert [json.loads(line) for line in lines][0] == {"name": "row10", "score": 10, "even": True, "half": 5.0}
    assert len(lines) == 3


def test_a_json_download_of_no_rows_is_still_json(api, scores):
    body = b"".join(api.get(f"/api/v1/runs/{scores.pk}/download/?format=json&filter=score:gt:99").streaming_content)
    assert json.loads(body) == {"columns": ["name", "score", "even", "half"], "data": []}


def test_an_unknown_download_format_is_a_400_naming_it(api, scores):
    response = api.get(f"/api/v1/runs/{scores.pk}/download/?format=xlsx")
    assert response.status_code == 400
    assert "Use csv, json, ndjson or zip" in str(response.json()["errors"]["format"])


def test_an_outsider_gets_a_404_for_the_filtered_result_and_its_download(api, scores, api_for, user):
    outsider = api_for(user)
    assert outsider.get(f"/api/v1/runs/{scores.pk}/result/?filter=score:eq:1").status_code == 404
    assert outsider.get(f"/api/v1/runs/{scores.pk}/download/?format=ndjson").status_code == 404
