"""A real worker keeps a small result in the database (a RunResult row written with the run's
outcome) and a large one in files, and the API, the run page and deleting a run treat both alike."""

from __future__ import annotations

import json

import pytest

from mlopen.core import storage
from mlopen.runs import results
from mlopen.runs.models import Run, RunResult

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

# 40 KB, so that a "big" result of random text is well past it and a small one well inside.
WORKER_ENV = {"MLOPEN_RESULT_IN_DATABASE_KB": "40"}

SIZED = """
import random, string

def get_params(run=True):
    return {"rows": ("integer", {"default": 5})}

def train(inpt, params=None):
    pass

def run_pipeline(input, model, args, params=None):
    rng = random.Random(7)
    data = [
        [i, "".join(rng.choice(string.ascii_letters) for _ in range(30)), i % 3]
        for i in range(params["rows"])
    ]
    return {
        "columns": ["n", "noise", "group"],
        "data": data,
        "graphs": {"data": [{"type": "bar", "x": [1, 2], "y": [3, 4]}], "layout": {}},
        "text": f"{len(data)} rows",
    }
"""


@pytest.fixture
def sized(pipeline_from, module_worker):
    pipeline_from("sized", SIZED)
    return module_worker


def _finished(wait_for_run, worker, run_id: int) -> Run:
    run = wait_for_run(run_id, timeout=90)
    assert run.status == "succeeded", f"{run.error}\n{run.log}\n{worker.log_text()[-3000:]}"
    return run


def _answers(api, run: Run) -> dict:
    """What the API says of a run's result, every way it can be asked."""
    base = f"/api/v1/runs/{run.pk}"

    def body(url: str):
        response = api.get(url)
        assert response.status_code == 200, response.content
        return response.json()

    def download(fmt: str) -> bytes:
        response = api.get(f"{base}/download/?format={fmt}&sort=2&order=desc&filter=n:lt:4")
        assert response.status_code == 200
        return b"".join(response.streaming_content)

    detail = body(f"{base}/")["result"]
    return {
        "detail": {key: detail[key] for key in ("columns", "rows", "text", "graphs", "problems")},
        "first rows": detail["data"][:4],
        "sorted": body(f"{base}/result/?sort=2&order=desc&page_size=3")["data"],
        "searched": body(f"{base}/result/?search=3&page_size=100")["rows"],
        "csv": download("csv").decode().splitlines()[:5],
        "ndjson": [json.loads(line) for line in download("ndjson").splitlines()],
    }


def test_a_small_result_is_kept_in_the_database_and_read_as_a_stored_one_is(
    sized, submit, wait_for_run, api, client, admin_user
):
    small = _finished(wait_for_run, sized, submit("sized", params={"rows": 20})["id"])
    big = _finished(wait_for_run, sized, submit("sized", params={"rows": 5000})["id"])

    assert (small.result_in_database, small.result_folder, small.result_rows) == (True, "", 20)
    assert RunResult.objects.filter(run=small).exists()
    # Another test's run of the same id (ids restart after each test) may have left a folder there.
    folder = storage.local_path(results.folder_of(small.pk))
    written = (
        [f for f in folder.rglob("*") if f.stat().st_mtime >= small.created_at.timestamp()] if folder.exists() else []
    )
    assert written == [], "a result in the database writes no files"
    assert (big.result_in_database, big.result_folder, big.result_rows) == (False, results.folder_of(big.pk), 5000)
    assert not RunResult.objects.filter(run=big).exists()

    small_answers, big_answers = _answers(api, small), _answers(api, big)
    assert small_answers["detail"]["problems"] == big_answers["detail"]["problems"] == {}
    assert small_answers["detail"]["text"] == "20 rows"
    # The first 20 of the big result's rows are the small result's rows (the same random seed).
    assert small_answers["first rows"] == big_answers["first rows"]
    assert small_answers["ndjson"] == big_answers["ndjson"] and len(small_answers["ndjson"]) == 4
    assert small_answers["csv"] == big_answers["csv"]
    assert small_answers["sorted"][0][2] == 2

    client.force_login(admin_user)
    page = client.get(f"/runs/{small.pk}/")
    assert page.status_code == 200 and b"20 rows" in page.content

    response = api.delete(f"/api/v1/runs/{small.pk}/")
    assert response.status_code == 204, response.content
    assert not RunResult.objects.filter(run_id=small.pk).exists()
