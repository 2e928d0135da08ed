"""Sharing: read access for colleagues, never the right to change; private by default.

alice and carol are in the group "team"; mallory is not.
"""

from __future__ import annotations

import pytest
from security_fixtures import dataset_of, make_pipeline, make_run

from mlopen.datasets.models import Dataset
from mlopen.runs.models import Run

pytestmark = pytest.mark.django_db


def share_run_with_team(world, web_as):
    response = web_as(world.alice).post(f"/runs/{world.run.pk}/share/", {"action": "group", "group": world.team.pk})
    assert response.status_code == 302


def test_datasets_and_runs_are_private_until_shared(world, web_as, api_as):
    carol = api_as(world.carol)
    assert carol.get(f"/api/v1/runs/{world.run.pk}/").status_code == 404
    assert carol.get(f"/api/v1/datasets/{world.dataset.pk}/").status_code == 404
    assert web_as(world.carol).get(f"/runs/{world.run.pk}/").status_code == 404
    assert carol.get("/api/v1/runs/").json()["count"] == 0


def test_a_run_shared_with_a_group_can_be_read_by_its_members_only(world, web_as, api_as):
    share_run_with_team(world, web_as)
    carol = api_as(world.carol)
    for suffix in ("", "logs/", "result/", "download/"):
        assert carol.get(f"/api/v1/runs/{world.run.pk}/{suffix}").status_code == 200, suffix
    page = web_as(world.carol).get(f"/runs/{world.run.pk}/")
    assert page.status_code == 200
    assert "Shared with you by alice" in page.content.decode()
    assert web_as(world.carol).get(f"/runs/{world.run.pk}/graphs/1/").status_code == 200
    assert api_as(world.mallory).get(f"/api/v1/runs/{world.run.pk}/").status_code == 404
    assert web_as(world.mallory).get(f"/runs/{world.run.pk}/").status_code == 404


def test_a_colleague_cannot_cancel_share_or_see_the_owners_controls(world, web_as, api_as):
    Run.objects.filter(pk=world.queued.pk).update(shared_with_all=True)
    world.queued.shared_groups.add(world.team)
    carol = api_as(world.carol)
    assert carol.post(f"/api/v1/runs/{world.queued.pk}/cancel/").status_code == 404
    assert carol.post(f"/api/v1/runs/{world.queued.pk}/share/", {"everyone": False}, format="json").status_code == 404
    assert web_as(world.carol).post(f"/runs/{world.queued.pk}/cancel/").status_code == 404
    assert web_as(world.carol).post(f"/runs/{world.queued.pk}/share/", {"action": "private"}).status_code == 404
    world.queued.refresh_from_db()
    assert (world.queued.status, world.queued.shared_with_all) == ("queued", True)
    page = web_as(world.carol).get(f"/runs/{world.queued.pk}/").content.decode()
    assert f"/runs/{world.queued.pk}/cancel/" not in page
    assert f"/runs/{world.queued.pk}/share/" not in page


def test_a_colleague_reruns_a_shared_run_only_when_its_input_is_shared_too(world, web_as, api_as):
    share_run_with_team(world, web_as)
    carol = api_as(world.carol)
    refused = carol.post(f"/api/v1/runs/{world.run.pk}/rerun/")
    assert refused.status_code == 403
    assert "its input dataset is not shared with you" in refused.json()["detail"]
    assert f"/runs/{world.run.pk}/rerun/" not in web_as(world.carol).get(f"/runs/{world.run.pk}/").content.decode()

    world.dataset.shared_groups.add(world.team)
    again = carol.post(f"/api/v1/runs/{world.run.pk}/rerun/")
    assert again.status_code == 201
    new = Run.objects.get(pk=again.json()["id"])
    assert (new.owner, new.retry_of_id, new.input_id) == (world.carol, world.run.pk, world.dataset.pk)


def test_a_run_shared_with_everyone_but_of_a_private_pipeline_cannot_be_rerun_by_outsiders(world, api_as):
    run = make_run(world.alice, world.pipeline, shared_with_all=True)
    response = api_as(world.mallory).post(f"/api/v1/runs/{run.pk}/rerun/")
    assert response.status_code == 400
    assert response.json()["errors"] == {"pipeline": f"Unknown pipeline {world.pipeline.pk}."}


def test_sharing_with_everyone_and_stopping_through_the_api(world, api_as):
    alice, mallory = api_as(world.alice), api_as(world.mallory)
    response = alice.patch(f"/api/v1/runs/{world.run.pk}/share/", {"everyone": True}, format="json")
    assert response.json() == {"everyone": True, "groups": []}
    assert mallory.get(f"/api/v1/runs/{world.run.pk}/").status_code == 200
    assert [r["id"] for r in mallory.get("/api/v1/runs/").json()["results"]] == [world.run.pk]
    stopped = alice.post(f"/api/v1/runs/{world.run.pk}/share/", {"everyone": False, "groups": []}, format="json")
    assert stopped.json() == {"everyone": False, "groups": []}
    assert mallory.get(f"/api/v1/runs/{world.run.pk}/").status_code == 404


@pytest.mark.parametrize("group", ["user", "author", "no-such-group", "outsiders"])
def test_owners_share_only_with_groups_they_belong_to(world, api_as, group):
    from django.contrib.auth.models import Group

    Group.objects.create(name="outsiders").user_set.add(world.mallory)
    response = api_as(world.alice).post(
        f"/api/v1/datasets/{world.dataset.pk}/share/", {"groups": [group]}, format="json"
    )
    assert response.status_code == 400
    assert "only with groups you belong to" in response.json()["errors"]["groups"]
    assert world.dataset.shared_groups.count() == 0


def test_a_shared_dataset_can_be_previewed_downloaded_and_used_but_not_deleted(world, api_as, web_as):
    response = api_as(world.alice).post(
        f"/api/v1/datasets/{world.dataset.pk}/share/", {"groups": ["team"]}, format="json"
    )
    assert response.json() == {"everyone": False, "groups": ["team"]}
    carol = api_as(world.carol)
    assert carol.get(f"/api/v1/datasets/{world.dataset.pk}/preview/").status_code == 200
    assert carol.get(f"/api/v1/datasets/{world.dataset.pk}/download/").status_code == 200
    assert (
        carol.post(
            "/api/v1/runs/", {"pipeline": world.pipeline.pk, "input": world.dataset.pk}, format="json"
        ).status_code
        == 201
    )
    assert carol.delete(f"/api/v1/datasets/{world.dataset.pk}/").status_code == 404
    assert web_as(world.carol).post(f"/datasets/{world.dataset.pk}/delete/").status_code == 404
    assert Dataset.objects.filter(pk=world.dataset.pk).exists()


def test_starting_a_run_with_someone_elses_dataset_is_refused(world, api_as):
    public = make_pipeline("public-pipeline")
    response = api_as(world.mallory).post(
        "/api/v1/runs/", {"pipeline": public.pk, "input": world.dataset.pk}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"input": f"Unknown dataset {world.dataset.pk}."}
    assert not Run.objects.filter(owner=world.mallory).exists()


def test_a_file_parameter_naming_someone_elses_dataset_is_refused(world, api_as):
    public = make_pipeline("with-lookup", params_run=[{"name": "lookup", "type": "file"}])
    response = api_as(world.mallory).post(
        "/api/v1/runs/", {"pipeline": public.pk, "params": {"lookup": world.dataset.pk}}, format="json"
    )
    assert response.status_code == 400
    assert "params.lookup" in response.json()["errors"]


def test_demo_datasets_are_visible_to_everyone_but_deleted_only_by_their_owner(world, api_as):
    demo = dataset_of(world.admin, "iris-demo")
    Dataset.objects.filter(pk=demo.pk).update(is_demo=True)
    mallory = api_as(world.mallory)
    assert mallory.get(f"/api/v1/datasets/{demo.pk}/").status_code == 200
    assert mallory.delete(f"/api/v1/datasets/{demo.pk}/").status_code == 404
    assert Dataset.objects.filter(pk=demo.pk).exists()


def test_the_owner_shares_from_the_dataset_page_and_stops_again(world, web_as):
    alice = web_as(world.alice)
    page = alice.get(f"/datasets/{world.dataset.pk}/").content.decode()
    assert "Private: only you and administrators see it." in page
    alice.post(f"/datasets/{world.dataset.pk}/share/", {"action": "everyone"})
    assert web_as(world.mallory).get(f"/datasets/{world.dataset.pk}/").status_code == 200
    page = alice.get(f"/datasets/{world.dataset.pk}/").content.decode()
    assert "Visible to <strong>everyone who can log in</strong>" in page
    alice.post(f"/datasets/{world.dataset.pk}/share/", {"action": "group", "group": world.team.pk})
    alice.post(f"/datasets/{world.dataset.pk}/share/", {"action": "unshare-group", "group": world.team.pk})
    assert world.dataset.shared_groups.count() == 0
    alice.post(f"/datasets/{world.dataset.pk}/share/", {"action": "private"})
    assert web_as(world.mallory).get(f"/datasets/{world.dataset.pk}/").status_code == 404


def test_a_shared_run_page_is_a_permalink_after_a_real_login(world, web_as, client):
    share_run_with_team(world, web_as)
    world.carol.set_password("carol-password-1")
    world.carol.save()
    response = client.post("/accounts/login/", {"username": "carol", "password": "carol-password-1"})
    assert response.status_code == 302
    page = client.get(f"/runs/{world.run.pk}/")
    assert page.status_code == 200
    assert "alice-secret summary" in page.content.decode()


def test_admins_see_everything(world, api_as):
    admin = api_as(world.admin)
    assert admin.get(f"/api/v1/runs/{world.run.pk}/").status_code == 200
    assert admin.get(f"/api/v1/datasets/{world.dataset.pk}/download/").status_code == 200
    assert admin.get(f"/api/v1/pipelines/{world.pipeline.pk}/").status_code == 200


# --- pipelines -------------------------------------------------------------------------------------


def pipeline_names(client) -> list[str]:
    return [p["name"] for p in client.get("/api/v1/pipelines/").json()["results"]]


def test_a_private_pipeline_is_seen_by_its_group_only(world, api_as, web_as):
    assert pipeline_names(api_as(world.carol)) == [world.pipeline.name]
    assert pipeline_names(api_as(world.mallory)) == []
    assert world.pipeline.name not in web_as(world.mallory).get("/pipelines/").content.decode()
    response = api_as(world.mallory).post("/api/v1/runs/", {"pipeline": world.pipeline.name}, format="json")
    assert response.status_code == 400


def test_the_author_makes_a_pipeline_private_and_public_again(world, web_as):
    public = make_pipeline("made-by-alice", created_by=world.alice)
    alice = web_as(world.alice)
    alice.post(f"/pipelines/{public.pk}/visibility/", {"group": world.team.pk})
    assert web_as(world.mallory).get(f"/pipelines/{public.pk}/").status_code == 404
    assert web_as(world.carol).get(f"/pipelines/{public.pk}/").status_code == 200
    alice.post(f"/pipelines/{public.pk}/visibility/", {"group": ""})
    assert web_as(world.mallory).get(f"/pipelines/{public.pk}/").status_code == 200


def test_only_the_pipelines_author_may_change_who_sees_it(world, web_as):
    from django.contrib.auth.models import Group

    public = make_pipeline("made-by-alice", created_by=world.alice)
    rivals = Group.objects.create(name="rivals")
    rivals.user_set.add(world.mallory)
    # mallory sees the pipeline, so she is told who may change it (not a 404), and nothing changes.
    response = web_as(world.mallory).post(f"/pipelines/{public.pk}/visibility/", {"group": rivals.pk})
    assert response.status_code == 403
    assert (
        "Only the owner of pipeline &#x27;made-by-alice&#x27;, its maintainers and admins can change its settings."
    ) in response.content.decode()
    assert web_as(world.carol).post(f"/pipelines/{public.pk}/visibility/", {"group": ""}).status_code == 403
    public.refresh_from_db()
    assert public.private_group is None
    # A pipeline one cannot see stays a 404.
    assert web_as(world.mallory).post(f"/pipelines/{world.pipeline.pk}/visibility/", {"group": ""}).status_code == 404


def test_a_new_version_cannot_be_uploaded_under_the_name_of_a_pipeline_one_cannot_see(world, api_as):
    from django.core.files.uploadedfile import SimpleUploadedFile

    control = b"def train(i, p=None):\n    pass\n\ndef run_pipeline(i, m, a, p=None):\n    return {}\n"
    response = api_as(world.mallory).post(
        "/api/v1/pipelines/",
        {"control": SimpleUploadedFile("x.py", control), "name": world.pipeline.name},
        format="multipart",
    )
    assert response.status_code == 400
    # Names are unique, so "taken" cannot be hidden; that a private pipeline holds it is not said.
    assert response.json()["detail"] == f"The name {world.pipeline.name!r} is taken; choose another."
    assert world.pipeline.versions.count() == 1
