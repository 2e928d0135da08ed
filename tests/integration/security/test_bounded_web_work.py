"""The web process does bounded work on what users and pipelines supply: a hostile CSV previews
without csv.Sniffer's quadratic regexes, a broken stored result costs its part of the run page (a
message, not a 500), and a JSON body nested too deeply is a 400."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest
from security_fixtures import dataset_of

from mlopen.core import storage
from mlopen.datasets import services as dataset_services
from mlopen.datasets import stats as dataset_stats
from mlopen.runs import result_queries, results

pytestmark = pytest.mark.django_db

UNREADABLE = "This result could not be shown"


# --- dataset preview --------------------------------------------------------------------------------


class _CountingReads:
    """A stored file that records how much each read asked for."""

    def __init__(self, handle, sizes: list):
        self._handle, self._sizes = handle, sizes

    def read(self, size=-1):
        self._sizes.append(size)
        return self._handle.read(size)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


@pytest.fixture
def preview_reads(monkeypatch):
    """Sizes asked of every stored file the preview opens; csv.Sniffer fails the test if it is used."""
    sizes: list = []
    opened = storage.open_stored
    monkeypatch.setattr(storage, "open_stored", lambda name, mode="rb": _CountingReads(opened(name, mode), sizes))

    def no_sniffing(*args, **kwargs):
        raise AssertionError("csv.Sniffer is quadratic on hostile input and must not be used")

    monkeypatch.setattr(csv.Sniffer, "sniff", no_sniffing)
    monkeypatch.setattr(csv.Sniffer, "has_header", no_sniffing)
    return sizes


def _bounded(sizes: list, limit: int | None = None) -> bool:
    limit = dataset_services._PREVIEW_BYTES if limit is None else limit
    return bool(sizes) and all(0 <= size <= limit for size in sizes)


# The dataset's page also shows column statistics, parsed from at most the file's first STATS_BYTES
# (it reads one byte more, to know whether that was the whole file).
PAGE_READ_LIMIT = max(dataset_services._PREVIEW_BYTES, dataset_stats.STATS_BYTES + 1)


# 256 KB of ',"a': csv.Sniffer took 170 s on it (11 s on 60 KB). As one line, and as many lines.
HOSTILE = {"one line": b',"a' * (256 * 1024 // 3), "many lines": (b',"a' * 1000 + b"\n") * 87}


@pytest.mark.parametrize("content", HOSTILE.values(), ids=HOSTILE.keys())
def test_dataset_preview_of_quadratic_sniffer_input_is_fast_and_correct(world, api_as, web_as, preview_reads, content):
    dataset = dataset_of(world.alice, "hostile", content=content)

    response = api_as(world.alice).get(f"/api/v1/datasets/{dataset.pk}/preview/")

    assert response.status_code == 200
    preview = response.json()
    assert preview["kind"] == "table"
    # The csv module's own reading of ',"a,"a,...' with a comma: an empty cell, then "a,a" cells.
    assert preview["columns"][:3] == ["", "a,a", "a,a"]
    assert _bounded(preview_reads)
    preview_reads.clear()
    assert web_as(world.alice).get(f"/datasets/{dataset.pk}/").status_code == 200
    assert _bounded(preview_reads, PAGE_READ_LIMIT)


@pytest.mark.parametrize(
    ("content", "columns", "first_row"),
    [
        (b"name,value\nalpha,1\nbeta,2\n", ["name", "value"], ["alpha", "1"]),
        (b"name;price\nalpha;1,5\nbeta;2,5\n", ["name", "price"], ["alpha", "1,5"]),
        (b"a\tb\tc\n1\t2\t3\n", ["a", "b", "c"], ["1", "2", "3"]),
        (b"a|b\n1|2\n", ["a", "b"], ["1", "2"]),
        (b'name,desc\n"x, y","he said ""hi"""\n', ["name", "desc"], ["x, y", 'he said "hi"']),
        (b"a, b, c\n1, 2, 3\n", ["a", "b", "c"], ["1", "2", "3"]),
        (b"id\tcomment\n1\tgood, fine\n2\tbad, awful\n", ["id", "comment"], ["1", "good, fine"]),
        (b"justone\nline\n", ["justone"], ["line"]),
    ],
)
def test_dataset_preview_finds_the_delimiter_of_ordinary_files_without_the_sniffer(
    world, preview_reads, content, columns, first_row
):
    preview = dataset_services.preview(dataset_of(world.alice, "ordinary", content=content))

    assert (preview["columns"], preview["rows"][0]) == (columns, first_row)


def test_dataset_preview_of_a_field_longer_than_the_csv_limit_shows_the_lines(world, preview_reads):
    content = b'"' + b"x" * (200 * 1024) + b"\nsecond\n"  # a quote never closed: one field of 200 KB

    preview = dataset_services.preview(dataset_of(world.alice, "unclosed", content=content))

    assert preview["kind"] == "text"
    assert preview["lines"][1] == "second"


# --- stored results that cannot be read -------------------------------------------------------------


def _deep(levels: int):
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


def _meta_with(**changes) -> bytes:
    meta = {"columns": ["name", "score"], "graphs": [], "text": "fine words", "warnings": [], **changes}
    return json.dumps(meta).encode()


FIGURE = {"kind": "figure", "figure": {"data": [], "layout": {}}}
# What to write over which file of a stored result, and the part of the result that then cannot be shown.
CORRUPTIONS = {
    "result.json missing": (results.META, None, "result"),
    "result.json cut short": (results.META, lambda good: good[: len(good) // 2], "result"),
    "result.json not JSON": (results.META, b"\xff\xfenot json at all", "result"),
    "result.json a list": (results.META, b"[1, 2, 3]", "result"),
    "result.json nested past the parser": (results.META, b"[" * 50_000 + b"]" * 50_000, "result"),
    "result.json nested objects past the parser": (results.META, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "result"),
    "column names a number": (results.META, _meta_with(columns=5), "table"),
    "text a dict": (results.META, _meta_with(text={"html": "<b>x</b>"}), "text"),
    "warnings a string": (results.META, _meta_with(warnings="careful"), "warnings"),
    "graphs a dict": (results.META, _meta_with(graphs={"kind": "figure"}), "graphs"),
    "figure a list": (results.META, _meta_with(graphs=[FIGURE, {"kind": "figure", "figure": [1, 2]}]), "graphs.1"),
    "graph a number": (results.META, _meta_with(graphs=[7]), "graphs.0"),
    "html graph without html": (results.META, _meta_with(graphs=[{"kind": "html", "html": {"x": 1}}]), "graphs.0"),
    "graph nested 200 levels": (
        results.META,
        _meta_with(graphs=[{"kind": "figure", "figure": {"data": [_deep(200)], "layout": {}}}]),
        "graphs.0",
    ),
    "table.parquet missing": (results.TABLE, None, "table"),
    "table.parquet cut short": (results.TABLE, lambda good: good[: len(good) // 2], "table"),
    "table.parquet not Parquet": (results.TABLE, b'{"columns": ["a"], "data": [[1]]}', "table"),
    "table.parquet empty": (results.TABLE, b"", "table"),
}


@pytest.fixture
def corrupt(world):
    """Overwrite (or remove, for None) one file of alice's stored result; return the run."""

    def apply(filename: str, content) -> object:
        path = Path(storage.local_path(f"{world.run.result_folder}/{filename}"))
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content(path.read_bytes()) if callable(content) else content)
        return world.run

    return apply


@pytest.mark.parametrize(("filename", "content", "part"), CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_run_page_with_malformed_result_answers_200_with_message(world, web_as, corrupt, filename, content, part):
    run = corrupt(filename, content)
    web = web_as(world.alice)

    page = web.get(f"/runs/{run.pk}/")

    assert page.status_code == 200
    assert UNREADABLE in page.content.decode()
    assert page.context["result"]["problems"][part].startswith(UNREADABLE)
    assert web.get(f"/runs/{run.pk}/table/?sort=1&order=desc").status_code == 200
    assert web.get(f"/runs/{run.pk}/graphs/1/").status_code in (200, 404)  # the HTML graph, if still readable


@pytest.mark.parametrize(("filename", "content", "part"), CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_run_api_with_malformed_result_answers_200_with_that_part_null_and_why(
    world, api_as, corrupt, filename, content, part
):
    run = corrupt(filename, content)
    api = api_as(world.alice)

    detail = api.get(f"/api/v1/runs/{run.pk}/")
    page = api.get(f"/api/v1/runs/{run.pk}/result/?sort=0")

    for response in (detail, page):
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
    result = detail.json()["result"]
    assert page.json()["problems"] == result["problems"]
    assert result["problems"][part].startswith(UNREADABLE)
    if part in ("result", "table"):
        assert (result["columns"], result["data"], result["rows"]) == (None, None, None)
    elif part.startswith("graphs."):
        assert result["graphs"][int(part.split(".")[1])] is None
    else:
        assert result[part] in (None, [])


@pytest.mark.parametrize(("filename", "content", "part"), CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_run_download_of_malformed_result_is_the_table_or_a_422_saying_why(
    world, api_as, corrupt, filename, content, part
):
    run = corrupt(filename, content)
    api = api_as(world.alice)

    for fmt in ("csv", "json"):
        response = api.get(f"/api/v1/runs/{run.pk}/download/?format={fmt}")
        if filename == results.TABLE:  # the table is the whole answer
            assert response.status_code == 422
            assert response["Content-Type"] == "application/json"
            assert response.json()["detail"].startswith(UNREADABLE)
        else:  # the table is intact: it downloads, with its own column names if result.json's are unreadable
            assert response.status_code == 200
            body = b"".join(response.streaming_content)
            assert b"alpha" in body


def test_result_table_with_a_list_column_sorts_it_element_by_element(world, web_as, api_as):
    from security_fixtures import make_run

    run = make_run(world.alice, world.pipeline, result={"columns": ["tags", "n"], "data": [[[3, 4], 2], [[1, 2], 1]]})

    ascending = api_as(world.alice).get(f"/api/v1/runs/{run.pk}/result/?sort=0")
    descending = api_as(world.alice).get(f"/api/v1/runs/{run.pk}/result/?sort=0&order=desc")

    assert ascending.status_code == descending.status_code == 200
    assert ascending.json()["data"] == [[[1, 2], 1], [[3, 4], 2]]
    assert descending.json()["data"] == [[[3, 4], 2], [[1, 2], 1]]
    assert "sort" not in ascending.json()["problems"]
    assert web_as(world.alice).get(f"/runs/{run.pk}/table/?sort=0").status_code == 200


class _SortFails:
    """A DuckDB connection whose ORDER BY fails, as one over a column it cannot compare would."""

    def __init__(self, con):
        self._con = con

    def sql(self, query, *args, **kwargs):
        if "ORDER BY" in query:
            raise duckdb.InvalidInputException("cannot compare these values")
        return self._con.sql(query, *args, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._con.close()


def test_result_table_with_an_unsortable_column_is_shown_in_stored_order(world, web_as, api_as, monkeypatch):
    from security_fixtures import make_run

    run = make_run(world.alice, world.pipeline, result={"columns": ["tags", "n"], "data": [[[3, 4], 2], [[1, 2], 1]]})
    connect = result_queries.connect
    monkeypatch.setattr(result_queries, "connect", lambda path: _SortFails(connect(path)))

    page = api_as(world.alice).get(f"/api/v1/runs/{run.pk}/result/?sort=0")
    table = web_as(world.alice).get(f"/runs/{run.pk}/table/?sort=0")

    assert page.status_code == 200
    assert page.json()["data"] == [[[3, 4], 2], [[1, 2], 1]]
    assert "cannot be sorted" in page.json()["problems"]["sort"]
    assert table.status_code == 200 and "cannot be sorted" in table.content.decode()


def test_a_well_formed_result_has_no_problems(world, api_as):
    assert api_as(world.alice).get(f"/api/v1/runs/{world.run.pk}/result/").json()["problems"] == {}


# --- JSON request bodies ----------------------------------------------------------------------------

DEEP_BODIES = {
    "50000 nested lists": b"[" * 50_000 + b"]" * 50_000,
    "50000 nested objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "150 nested lists in a field": b'{"pipeline": 1, "kind": "run", "params": {"x": ' + b"[" * 150 + b"]" * 150 + b"}}",
}


@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/runs/"),
        ("post", "/api/v1/runs/{run}/rerun/"),
        ("patch", "/api/v1/runs/{run}/share/"),
        ("post", "/api/v1/datasets/{dataset}/share/"),
        ("patch", "/api/v1/pipelines/{pipeline}/"),
    ],
)
def test_deeply_nested_json_body_answers_400(world, api_as, method, path, body):
    path = path.format(run=world.run.pk, dataset=world.dataset.pk, pipeline=world.pipeline.pk)

    response = getattr(api_as(world.alice), method)(path, data=body, content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"] == "Request body is nested too deeply (limit 100 levels)."


def test_json_body_nested_within_the_limit_is_parsed(world, api_as):
    body = {"everyone": False, "groups": [], "note": _deep(90)}

    response = api_as(world.alice).patch(f"/api/v1/runs/{world.run.pk}/share/", data=body, format="json")

    assert response.status_code == 200
