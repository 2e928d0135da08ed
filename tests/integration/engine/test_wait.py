"""Waiting for a run in the request (long polling): POST with "wait", GET ?wait=.

A client that asks to wait gets the finished run, with its result, in the answer to that one
request; a run that is not finished when the wait is over is answered as it is then.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from mlopen.core import doorbell
from mlopen.runs import waiting
from mlopen.runs.models import Run

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

QUICK = """
    def train(inpt, params=None):
        pass
    def run_pipeline(input, model, args, params=None):
        return {"columns": ["n"], "data": [[1], [2]], "text": "two rows"}
    """

# Long enough that the request is already asleep when the run finishes.
SLOWISH = """
    import time
    def train(inpt, params=None):
        pass
    def run_pipeline(input, model, args, params=None):
        time.sleep(1.5)
        return {"text": "done"}
    """

HANGS = """
    import time
    def train(inpt, params=None):
        pass
    def run_pipeline(input, model, args, params=None):
        print("started", flush=True)
        time.sleep(300)
    """


def test_a_post_that_waits_answers_with_the_finished_run_and_its_result(pipeline_from, submit, module_worker):
    pipeline_from("quick", QUICK)

    run = submit("quick", wait=60)

    assert run["status"] == "succeeded", run
    assert run["result"]["data"] == [[1], [2]]
    assert run["result"]["text"] == "two rows"


def test_a_get_that_waits_answers_once_the_run_has_finished(pipeline_from, submit, api, module_worker):
    pipeline_from("quick", QUICK)
    run = submit("quick")

    response = api.get(f"/api/v1/runs/{run['id']}/", {"wait": "60"})

    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    assert response.json()["result"]["rows"] == 2


def test_a_wait_that_is_over_before_the_run_answers_with_the_run_as_it_is(pipeline_from, submit, api, module_worker):
    pipeline_from("hangs", HANGS)
    run = submit("hangs", wait=0.5)
    try:
        assert run["status"] in ("queued", "running")
        assert run["result"] is None

        response = api.get(f"/api/v1/runs/{run['id']}/", {"wait": "0.5"})

        assert response.status_code == 200
        assert response.json()["status"] in ("queued", "running")
    finally:
        api.post(f"/api/v1/runs/{run['id']}/cancel/")


def test_a_waiting_request_ends_when_the_run_is_cancelled(pipeline_from, submit, api, module_worker):
    pipeline_from("hangs", HANGS)
    run = submit("hangs")
    answers = []

    def wait_in_another_request():
        try:
            answers.append(waiting.wait_until_finished(run["id"], 60))
        finally:
            connection.close()

    waiter = threading.Thread(target=wait_in_another_request)
    waiter.start()

    api.post(f"/api/v1/runs/{run['id']}/cancel/")
    waiter.join(90)

    assert answers == [True]
    assert Run.objects.get(pk=run["id"]).status == "cancelled"


def test_when_every_waiting_slot_is_taken_a_request_answers_at_once(pipeline_from, submit, api, monkeypatch):
    pipeline_from("hangs", HANGS)
    run = submit("hangs")  # it hangs: the run is not finished whenever the request looks
    slots = threading.BoundedSemaphore(1)
    slots.acquire()  # another request is waiting
    monkeypatch.setattr(waiting, "_slots", slots)
    monkeypatch.setattr(waiting, "_watch", lambda *args: pytest.fail("the request waited without a slot"))

    response = api.get(f"/api/v1/runs/{run['id']}/", {"wait": "60"})

    assert response.status_code == 200
    assert response.json()["status"] in ("queued", "running")
    api.post(f"/api/v1/runs/{run['id']}/cancel/")


@pytest.mark.parametrize("wait", ["-1", "soon", "nan", "inf", "100000"])
def test_a_bad_wait_on_get_is_a_400_naming_it(pipeline_from, submit, api, wait):
    pipeline_from("quick", QUICK)
    run = submit("quick")

    response = api.get(f"/api/v1/runs/{run['id']}/", {"wait": wait})

    assert response.status_code == 400
    assert "wait" in response.json()["errors"]
    assert "seconds" in response.json()["errors"]["wait"]
    api.post(f"/api/v1/runs/{run['id']}/cancel/")


@pytest.mark.parametrize("wait", [-1, "soon", 100000, True])
def test_a_bad_wait_on_post_is_a_400_and_queues_nothing(pipeline_from, api, wait):
    pipeline_from("quick", QUICK)

    response = api.post("/api/v1/runs/", {"pipeline": "quick", "wait": wait}, format="json")

    assert response.status_code == 400
    assert "wait" in response.json()["errors"]
    assert not Run.objects.exists()


def test_a_rerun_that_waits_answers_with_the_finished_new_run(pipeline_from, submit, api, module_worker):
    pipeline_from("quick", QUICK)
    first = submit("quick", wait=60)

    response = api.post(f"/api/v1/runs/{first['id']}/rerun/", {"wait": 60}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "succeeded", (first, module_worker.log_text()[-4000:])
    assert response.json()["retry_of"] == first["id"]
    assert response.json()["result"]["text"] == "two rows"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's")
def test_on_postgresql_a_waiting_request_is_notified_instead_of_polling(
    pipeline_from, submit, module_worker, monkeypatch
):
    pipeline_from("slowish", SLOWISH)
    notices = []
    notice_for = waiting._notice_for
    monkeypatch.setattr(waiting, "_notice_for", lambda *args: notices.append(notice_for(*args)) or notices[-1])

    run = submit("slowish", wait=60)

    assert run["status"] == "succeeded"
    assert notices and notices[-1] is True  # woken by the worker's notice, not by a second look


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's waiting requests use a doorbell")
def test_on_sqlite_a_waiting_request_is_woken_by_the_worker_instead_of_polling(
    pipeline_from, submit, module_worker, monkeypatch
):
    pipeline_from("slowish", SLOWISH)
    rings = []
    wait = doorbell.Doorbell.wait
    monkeypatch.setattr(doorbell.Doorbell, "wait", lambda bell, timeout: rings.append(wait(bell, timeout)) or rings[-1])

    run = submit("slowish", wait=60)

    assert run["status"] == "succeeded"
    assert rings and rings[-1] is True  # woken by the worker's ring, not by the once-a-second look
    assert list(waiting._doorbells_folder().iterdir()) == []  # the request's doorbell went with it


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's waiting requests use a doorbell")
def test_without_a_doorbell_a_waiting_request_checks_the_row_instead(pipeline_from, submit, module_worker, monkeypatch):
    pipeline_from("quick", QUICK)

    def refuse(cls, folder, topic):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(doorbell.Doorbell, "open", classmethod(refuse))

    run = submit("quick", wait=60)

    assert run["status"] == "succeeded"
    assert run["result"]["data"] == [[1], [2]]
