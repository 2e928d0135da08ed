"""Lists at any size: the runs list pages by keyset cursor (page 2 000 costs what page 1 costs), a
changed cursor is a 400 naming `cursor`, counts stop at a threshold, and no list page's query count
grows with the number of rows."""

from __future__ import annotations

import base64
from urllib import parse

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext

from mlopen.api import pagination
from mlopen.runs.models import Run


@pytest.fixture
def runs_of(api, make_run, make_pipeline):
    pipeline = make_pipeline(name="many")

    def make(count: int, owner=None):
        return [make_run(owner or api.user, pipeline=pipeline, status="failed") for _ in range(count)]

    return make


def _walk(api, first: str) -> list[int]:
    seen, url = [], first
    while url:
        body = api.get(url).json()
        seen += [run["id"] for run in body["results"]]
        url = body["next"]
    return seen


def test_the_runs_list_walks_every_run_once_by_cursor_newest_first(api, runs_of):
    made = runs_of(7)
    first = api.get("/api/v1/runs/?page_size=3").json()
    assert (first["count"], first["count_text"], first["previous"]) == (7, "7", None)
    assert "cursor=" in first["next"] and "page=" not in first["next"]
    assert _walk(api, "/api/v1/runs/?page_size=3") == [run.pk for run in reversed(made)]
    second = api.get(first["next"]).json()
    assert [run["id"] for run in api.get(second["previous"]).json()["results"]] == [r["id"] for r in first["results"]]


def _walk_back(api, last: str) -> list[int]:
    seen, url = [], last
    while url:
        body = api.get(url).json()
        seen = [run["id"] for run in body["results"]] + seen
        url = body["previous"]
    return seen


def test_runs_sharing_one_created_at_are_walked_once_each_way_past_drfs_offset_cap(api, runs_of, monkeypatch):
    # DRF's cursor holds the time alone and steps over ties by an offset capped at offset_cutoff
    # (1 000); here the cap is 3 and 9 runs share one time, with one older and one newer around them.
    monkeypatch.setattr(pagination.KeysetPagination, "offset_cutoff", 3)
    older, *tied, newer = runs_of(11)
    one_time = tied[0].created_at
    Run.objects.filter(pk__in=[run.pk for run in tied]).update(created_at=one_time)
    newest_first = [newer.pk, *sorted((run.pk for run in tied), reverse=True), older.pk]

    assert _walk(api, "/api/v1/runs/?page_size=2") == newest_first
    pages, url = [], "/api/v1/runs/?page_size=2"
    while url:
        body = api.get(url).json()
        pages.append(body)
        url = body["next"]
    assert len(pages) == 6
    assert _walk_back(api, pages[-1]["previous"]) == newest_first[:10]
    assert [run["id"] for run in api.get(pages[3]["previous"]).json()["results"]] == newest_first[4:6]


def test_a_cursor_an_earlier_mlopen_gave_still_pages_by_time_and_offset(api, runs_of):
    made = runs_of(5)
    # A time-only position with an offset, as DRF's cursor wrote it: the runs older than made[3],
    # skipping the first one of them.
    position = parse.quote(str(made[3].created_at))
    cursor = base64.b64encode(f"o=1&p={position}".encode()).decode()
    body = api.get("/api/v1/runs/", {"cursor": cursor, "page_size": 2}).json()
    assert [run["id"] for run in body["results"]] == [made[1].pk, made[0].pk]
    assert body["next"] is None
    assert [run["id"] for run in api.get(body["previous"]).json()["results"]] == [made[4].pk, made[3].pk, made[2].pk][
        -2:
    ]


def test_page_numbers_still_page_for_clients_that_ask_by_number(api, runs_of):
    made = runs_of(5)
    body = api.get("/api/v1/runs/?page=2&page_size=2").json()
    assert [run["id"] for run in body["results"]] == [made[2].pk, made[1].pk]
    assert (body["count"], body["count_text"]) == (5, "5")


def test_a_count_past_the_threshold_is_not_scanned_for(api, runs_of, monkeypatch):
    monkeypatch.setattr(pagination, "COUNT_THRESHOLD", 3)
    monkeypatch.setattr(pagination.capped_count, "__defaults__", (3,))
    monkeypatch.setattr(pagination.count_text, "__defaults__", (3,))
    runs_of(4)
    body = api.get("/api/v1/runs/").json()
    assert (body["count"], body["count_text"], len(body["results"])) == (None, "3+", 4)


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        "%%%",
        base64.b64encode(b"p=yesterday").decode(),
        base64.b64encode(b"p=2026-13-45T99:00:00").decode(),
        base64.b64encode(b"o=-1").decode(),
        base64.b64encode(b"o=99999999").decode(),
        base64.b64encode(b"r=maybe").decode(),
        base64.b64encode(b"p=2026-01-01T00:00:00%2B00:00|abc").decode(),
        base64.b64encode(b"p=2026-01-01T00:00:00%2B00:00|0").decode(),
        base64.b64encode(b"p=|5").decode(),
        base64.b64encode(b"p=2026-01-01T00:00:00%2B00:00|5|6").decode(),
        "",
    ],
)
def test_a_changed_cursor_is_a_400_naming_cursor(api, runs_of, cursor):
    runs_of(2)
    response = api.get("/api/v1/runs/", {"cursor": cursor})
    if cursor == "":
        assert response.status_code in (200, 400)
        return
    assert response.status_code == 400, response.content
    assert "start again without it" in response.json()["errors"]["cursor"]


def test_an_outsider_walks_no_run_of_someone_else(api, runs_of, api_for, user):
    runs_of(3)
    assert _walk(api_for(user), "/api/v1/runs/?page_size=2") == []


def _queries(client, url: str) -> int:
    # A token's last use is written at most once a minute (core.tokens): a first request pays that
    # write, so each count is of a second, identical request.
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(captured)


@pytest.mark.parametrize(
    "url",
    ["/api/v1/runs/", "/api/v1/runs/?status=failed&pipeline=many", "/api/v1/runs/?page=1", "/api/v1/pipelines/"],
)
def test_the_query_count_of_an_api_list_page_does_not_grow_with_its_rows(api, runs_of, make_pipeline, url):
    runs_of(2)
    make_pipeline(name="other")
    few = _queries(api, url)
    runs_of(12)
    for n in range(5):
        make_pipeline(name=f"more{n}")
    assert _queries(api, url) == few


def test_the_query_count_of_the_datasets_list_does_not_grow_with_its_rows(api):
    from mlopen.datasets.services import store_dataset

    store_dataset(owner=api.user, name="d0.csv", filename="d0.csv", chunks=[b"a\n1\n"])
    few = _queries(api, "/api/v1/datasets/")
    for n in range(1, 8):
        store_dataset(owner=api.user, name=f"d{n}.csv", filename=f"d{n}.csv", chunks=[b"a\n1\n"])
    assert _queries(api, "/api/v1/datasets/") == few


def test_the_query_count_of_the_runs_page_does_not_grow_with_its_rows(client, admin_user, runs_of):
    client.force_login(admin_user)
    runs_of(2, owner=admin_user)
    few = _queries(client, "/runs/")
    runs_of(20, owner=admin_user)
    assert _queries(client, "/runs/") == few


@pytest.mark.parametrize(
    "query",
    ["", "&status=failed&pipeline=many", "&ordering=-metric.loss", "&ordering=metric.loss&columns=metric.loss"],
)
def test_deep_page_numbers_read_keys_first_and_show_what_an_offset_shows(api, runs_of, monkeypatch, query):
    from mlopen.core import paging
    from mlopen.runs.models import RunMetric

    made = runs_of(9)
    for index, run in enumerate(made):  # ties and a missing value, as real metrics have
        if index != 4:
            RunMetric.objects.create(run=run, name="loss", step=0, value=float(index % 3))

    def pages() -> list[list[int]]:
        return [
            [run["id"] for run in api.get(f"/api/v1/runs/?page={number}&page_size=2{query}").json()["results"]]
            for number in range(1, 6)
        ]

    by_offset = pages()
    monkeypatch.setattr(paging, "KEYS_FIRST_FROM", 1)  # every page but the first keys first
    fetched = []
    in_bulk = QuerySet.in_bulk
    monkeypatch.setattr(QuerySet, "in_bulk", lambda rows, keys: fetched.append(keys) or in_bulk(rows, keys))
    keys_first = pages()

    assert keys_first == by_offset
    assert fetched == keys_first[1:]  # pages 2 to 5 were read by their keys
    assert sorted(sum(keys_first, [])) == sorted(run.pk for run in made)


def test_a_deep_runs_page_of_the_web_reads_keys_first_and_shows_the_same_runs(client, admin_user, runs_of, monkeypatch):
    from mlopen.core import paging
    from mlopen.web.views import run_catalog

    client.force_login(admin_user)
    made = runs_of(7, owner=admin_user)
    monkeypatch.setattr(run_catalog, "RUNS_PER_PAGE", 3)
    monkeypatch.setattr(paging, "KEYS_FIRST_FROM", 1)
    fetched = []
    in_bulk = QuerySet.in_bulk
    monkeypatch.setattr(QuerySet, "in_bulk", lambda rows, keys: fetched.append(keys) or in_bulk(rows, keys))

    page = client.get("/runs/?page=2").content.decode()

    shown = [run.pk for run in made if f'href="/runs/{run.pk}/"' in page]
    assert shown == [made[1].pk, made[2].pk, made[3].pk]
    assert fetched == [[made[3].pk, made[2].pk, made[1].pk]]
