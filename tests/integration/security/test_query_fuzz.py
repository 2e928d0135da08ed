"""Every page, as its owner and as another user, with hostile query strings: never a 500.

The pages are those of the persona walk's table (every web route with a GET, its URL built from the
same world), so a new page is fuzzed as soon as it is declared there. Each request sets every query
parameter any page reads, plus unknown ones, to one hostile value, once as a single value and once
as an array; the API's query strings are fuzzed by Schemathesis (test_api_schemathesis.py).
"""

from __future__ import annotations

import pytest
from security_routes import all_routes
from test_persona_walk import CASES

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# What the pages read (grep request.GET in mlopen.web), what the API's pages do, and some nobody reads.
PARAMETERS = ("page", "pipeline", "kind", "status", "input", "from", "to", "sort", "order", "name", "next", "q", "x")
HOSTILE = (
    "²",  # isdigit() says yes, int() says no
    "٣",  # an Arabic-Indic three: int() reads it
    "9" * 20,  # past the database's 64-bit integers
    "-1",
    "0",
    "1e9",
    "0x10",
    " 7 ",
    "",
    "\x00",
    "\u202e\U0001f600\ufeff",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "x" * 20_000,
)


def _pages(world):
    api_routes = {route.key for route in all_routes() if route.is_api}
    for case in CASES:
        if case.method == "get" and case.route not in api_routes and not case.download:
            yield case.route, case.url(world).split("?")[0]


@pytest.mark.parametrize("persona", ["alice", "mallory"])
def test_no_page_answers_a_hostile_query_string_with_a_server_error(world, web_as, persona):
    client = web_as(world.persona(persona))
    failures = []
    for route, url in _pages(world):
        for value in HOSTILE:
            for query in ({name: value for name in PARAMETERS}, {name: [value, "1", value] for name in PARAMETERS}):
                response = client.get(url, query)
                if response.status_code >= 500:
                    failures.append(f"{route} {url} {value[:20]!r}: {response.status_code}")
    assert failures == []


def test_the_fuzz_reaches_every_page_that_reads_a_query_string(world):
    covered = {route for route, _ in _pages(world)}
    assert {"web:run-list", "web:run-new", "web:run-table", "web:pipeline-compare", "web:dataset-list"} <= covered


@pytest.mark.parametrize("path", ["/runs/99999999999999999999/", "/pipelines/99999999999999999999/", "/datasets/²/"])
def test_ids_in_paths_that_no_database_can_hold_are_404s(world, web_as, path):
    assert web_as(world.alice).get(path).status_code == 404


@pytest.mark.parametrize(
    "path", ["/api/v1/runs/99999999999999999999/", "/api/v1/pipelines/²/", "/api/v1/me/tokens/1e3/"]
)
def test_api_ids_that_no_database_can_hold_are_json_404s(world, api_as, path):
    response = api_as(world.alice).get(path)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
