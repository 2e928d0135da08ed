"""Live fragments: the runs list, the home page and a pipeline page poll small fragments that answer
304 while nothing the user can see changed, and new content (and a new ETag) once a run did."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def _etag(response) -> str:
    assert response.status_code == 200, response.content[:500]
    return response["ETag"]


def test_the_runs_fragment_answers_304_until_a_run_changes(alice_client, user, make_pipeline, make_run):
    from mlopen.runs import lifecycle
    from mlopen.runs.models import Run

    pipeline = make_pipeline()
    run = make_run(user, pipeline, status="queued")

    first = alice_client.get("/runs/live/")
    etag = _etag(first)
    assert f'data-run-id="{run.pk}" data-run-status="queued"' in first.content.decode()

    unchanged = alice_client.get("/runs/live/", HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304 and unchanged.content == b""

    assert lifecycle.claim(run.pk, "worker-1", "none") is not None
    assert Run.objects.get(pk=run.pk).status == "running"
    moved = alice_client.get("/runs/live/", HTTP_IF_NONE_MATCH=etag)
    assert moved.status_code == 200
    assert moved["ETag"] != etag
    assert f'data-run-id="{run.pk}" data-run-status="running"' in moved.content.decode()
    assert alice_client.get("/runs/live/", HTTP_IF_NONE_MATCH=moved["ETag"]).status_code == 304


def test_the_runs_page_carries_the_fragments_etag_and_polls_it(alice_client, user, make_pipeline, make_run):
    make_run(user, make_pipeline())
    page = alice_client.get("/runs/?status=succeeded").content.decode()
    fragment = alice_client.get("/runs/live/?status=succeeded")
    # The page starts polling with the ETag of what it shows: the first poll is a 304.
    assert f'data-etag="{fragment["ETag"].replace(chr(34), "&quot;")}"' in page
    assert 'hx-get="/runs/live/?status=succeeded"' in page and 'hx-trigger="every 3s"' in page


def test_a_new_run_of_someone_else_changes_nothing_for_alice(alice_client, user, outsider, make_pipeline, make_run):
    pipeline = make_pipeline()
    make_run(user, pipeline)
    etag = _etag(alice_client.get("/runs/live/"))
    make_run(outsider, pipeline)  # not shared with alice
    assert alice_client.get("/runs/live/", HTTP_IF_NONE_MATCH=etag).status_code == 304
    make_run(user, pipeline)
    assert alice_client.get("/runs/live/", HTTP_IF_NONE_MATCH=etag).status_code == 200


def test_the_filters_of_the_list_apply_to_its_fragment(alice_client, user, make_pipeline, make_run):
    first, second = make_pipeline("first"), make_pipeline("second")
    mine = make_run(user, first)
    other = make_run(user, second)
    html = alice_client.get(f"/runs/live/?pipeline={first.pk}").content.decode()
    assert f'data-run-id="{mine.pk}"' in html and f'data-run-id="{other.pk}"' not in html


def test_the_home_fragment_updates_its_counters(alice_client, user, make_pipeline, make_run):
    pipeline = make_pipeline()
    etag = _etag(alice_client.get("/live/home/"))
    assert alice_client.get("/live/home/", HTTP_IF_NONE_MATCH=etag).status_code == 304
    run = make_run(user, pipeline, status="running")
    changed = alice_client.get("/live/home/", HTTP_IF_NONE_MATCH=etag)
    html = changed.content.decode()
    assert changed.status_code == 200
    assert 'id="home-recent-runs" hx-swap-oob="true"' in html and f'data-run-id="{run.pk}"' in html
    assert "queued or running" in html
    assert 'hx-get="/live/home/"' in alice_client.get("/").content.decode()


def test_the_pipeline_fragment_shows_its_recent_runs_and_404s_for_an_outsider(
    alice_client, client_for, user, outsider, make_pipeline, make_run
):
    from django.contrib.auth.models import Group

    from mlopen.pipelines.models import Pipeline

    team = Group.objects.create(name="team")
    user.groups.add(team)
    pipeline = make_pipeline()
    Pipeline.objects.filter(pk=pipeline.pk).update(private_group=team)
    run = make_run(user, pipeline)
    response = alice_client.get(f"/pipelines/{pipeline.pk}/runs/live/")
    assert response.status_code == 200 and f'data-run-id="{run.pk}"' in response.content.decode()
    assert (
        alice_client.get(f"/pipelines/{pipeline.pk}/runs/live/", HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304
    )
    assert client_for(outsider).get(f"/pipelines/{pipeline.pk}/runs/live/").status_code == 404
    assert (
        f'hx-get="/pipelines/{pipeline.pk}/runs/live/"'
        in alice_client.get(f"/pipelines/{pipeline.pk}/").content.decode()
    )


def test_rows_say_what_the_page_does_when_the_run_ends(alice_client, user, outsider, make_pipeline, make_run):
    from mlopen.notifications.preferences import set_preference
    from mlopen.runs.models import Run

    first, second = make_pipeline("first"), make_pipeline("second")
    set_preference(user, email="off", browser="failures")
    set_preference(user, pipeline=second.pk, browser="off")
    on_first = make_run(user, first)
    on_second = make_run(user, second)
    theirs = make_run(outsider, first)
    Run.objects.filter(pk=theirs.pk).update(shared_with_all=True)

    html = alice_client.get("/runs/live/").content.decode()
    assert f'data-run-id="{on_first.pk}" data-run-status="succeeded" data-notify="failures"' in html
    assert f'data-run-id="{on_second.pk}" data-run-status="succeeded" data-notify="off"' in html
    assert f'data-run-id="{theirs.pk}" data-run-status="succeeded" data-notify="off"' in html


def test_the_run_status_fragment_announces_the_end_before_the_reload(alice_client, user, make_pipeline, make_run):
    import json

    run = make_run(user, make_pipeline(), status="failed")
    response = alice_client.get(f"/runs/{run.pk}/status/", HTTP_HX_REQUEST="true")
    assert response["HX-Refresh"] == "true"
    assert json.loads(response["HX-Trigger"]) == {
        "mlopen:run-finished": {"id": run.pk, "status": "failed", "notify": "all", "label": f"iris #{run.pk}"}
    }


def test_every_list_labels_a_run_by_its_display_name(alice_client, user, make_pipeline, make_run):
    """Home, pipeline and runs lists, and the run page's end notice, all say "iris #7" or the run's name."""
    pipeline = make_pipeline()
    unnamed = make_run(user, pipeline)
    make_run(user, pipeline, name="baseline")

    for url in ("/live/home/", f"/pipelines/{pipeline.pk}/runs/live/", "/runs/live/"):
        html = alice_client.get(url).content.decode()
        assert f'data-run-label="iris #{unnamed.pk}"' in html, url
        assert 'data-run-label="baseline"' in html, url
