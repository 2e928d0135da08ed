"""Fair dispatch with a real worker: users take turns, so a user who queued many runs delays another
user's single run by at most one run per worker."""

from __future__ import annotations

import pytest
from engine_support import poll

from mlopen.runs.models import Run

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

# Long enough that alice's thirty runs are still waiting when bob's arrives.
QUICK = """
import time
def train(inpt, params=None):
    pass
def run_pipeline(input, model, args, params=None):
    time.sleep(0.3)
    return {"text": "ran"}
"""


def test_with_one_worker_a_single_run_waits_for_at_most_one_run_of_a_user_who_queued_thirty(
    upload_pipeline, api_for, user, django_user_model, start_worker, wait_for_run
):
    upload_pipeline("turns.py", source=QUICK)
    alice = api_for(user)
    bob = api_for(django_user_model.objects.create_user("bob", password="bob-password-1"))
    start_worker()
    alices = []
    for _ in range(30):
        response = alice.post("/api/v1/runs/", {"pipeline": "turns"}, format="json")
        assert response.status_code == 201, response.content
        alices.append(response.json()["id"])
    poll(
        lambda: Run.objects.filter(pk__in=alices, started_at__isnull=False).exists(),
        timeout=120,
        message="alice's first run started",
    )
    response = bob.post("/api/v1/runs/", {"pipeline": "turns"}, format="json")
    assert response.status_code == 201, response.content
    bobs = wait_for_run(response.json()["id"], timeout=120)
    assert bobs.status == "succeeded", bobs.error
    # Alice's runs that started once bob's existed and before it: at most one (the worker may have
    # been choosing its next run just as bob's arrived). Timestamps of one host's clock.
    alices_runs = Run.objects.filter(pk__in=alices)
    started_before = alices_runs.filter(started_at__lt=bobs.created_at).count()
    ahead = alices_runs.filter(started_at__gte=bobs.created_at, started_at__lt=bobs.started_at).count()
    assert ahead <= 1, (started_before, ahead)
    assert started_before + ahead < 30  # bob's run did not simply come last
    # Nothing of alice's was lost or failed: every one of her runs ends succeeded.
    for run_id in alices:
        assert wait_for_run(run_id, timeout=120).status == "succeeded"
