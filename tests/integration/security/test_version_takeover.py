"""Version takeover: an author publishing a new version of someone else's pipeline.

Everyone who runs a pipeline runs its newest version's code on their data, so only its owner, the
maintainers the owner names and admins may publish one (mlopen.pipelines.rules). Anyone else is
told who may, with a 403, and nothing is stored: no version row, no file in storage, no staging
folder left behind. A private pipeline one cannot see is not revealed by the refusal.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from security_fixtures import make_pipeline

pytestmark = pytest.mark.django_db

GOOD = b"def train(inpt, params=None):\n    pass\n\ndef run_pipeline(input, model, args, params=None):\n    return {}\n"
EVIL = b"# mallory's\n" + GOOD
TOOL = "alice-tool"
PUBLISH_REFUSAL = f"Only the owner of pipeline {TOOL!r}, its maintainers and admins can publish a new version."
MAINTAINERS_REFUSAL = f"Only the owner of pipeline {TOOL!r} and admins can change its maintainers."


@pytest.fixture
def tool(world, api_as):
    """alice's public pipeline, uploaded for real: one version with its file in storage."""
    from mlopen.pipelines.models import Pipeline

    response = api_as(world.alice).post(
        "/api/v1/pipelines/",
        {"control": SimpleUploadedFile("tool.py", GOOD), "name": TOOL, "description": "alice's tool"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    return Pipeline.objects.get(pk=response.json()["id"])


def stored() -> tuple[dict[str, bytes], list[str]]:
    """Every pipeline file in storage (with its content), and the upload staging folders."""
    root = Path(default_storage.location) / "pipelines"
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    staging = settings.MLOPEN_WORK_DIR / "uploads"
    return files, sorted(p.name for p in staging.iterdir()) if staging.exists() else []


def api_upload(client, name: str, source: bytes = EVIL, **extra):
    return client.post(
        "/api/v1/pipelines/",
        {"control": SimpleUploadedFile("evil.py", source), "name": name, **extra},
        format="multipart",
    )


def api_new_version(client, pipeline, source: bytes = EVIL):
    return client.post(
        f"/api/v1/pipelines/{pipeline.pk}/versions/",
        {"control": SimpleUploadedFile("evil.py", source)},
        format="multipart",
    )


def web_upload(client, name: str, source: bytes = EVIL):
    return client.post(
        "/pipelines/upload/", {"control": SimpleUploadedFile("evil.py", source), "name": name, "description": ""}
    )


def assert_unchanged(pipeline, before) -> None:
    pipeline.refresh_from_db()
    assert list(pipeline.versions.values_list("number", "created_by__username")) == [(1, "alice")]
    assert pipeline.description == "alice's tool"
    assert stored() == before


# --- a newcomer is refused, and nothing is stored -------------------------------------------------------


def test_author_cannot_publish_version_of_others_pipeline_via_api(world, tool, api_as):
    before = stored()
    response = api_upload(api_as(world.mallory), TOOL, description="now mine")
    assert response.status_code == 403
    assert response.json() == {"detail": PUBLISH_REFUSAL, "errors": {}}
    assert_unchanged(tool, before)


def test_author_cannot_publish_version_of_others_pipeline_via_versions_endpoint(world, tool, api_as):
    before = stored()
    response = api_new_version(api_as(world.mallory), tool)
    assert response.status_code == 403
    assert response.json() == {"detail": PUBLISH_REFUSAL, "errors": {}}
    assert_unchanged(tool, before)


def test_author_cannot_publish_version_of_others_pipeline_via_web_form(world, tool, web_as):
    before = stored()
    response = web_upload(web_as(world.mallory), TOOL)
    assert response.status_code == 403
    assert list(response.context["form"].non_field_errors()) == [PUBLISH_REFUSAL]
    assert PUBLISH_REFUSAL.replace("'", "&#x27;") in response.content.decode()
    assert_unchanged(tool, before)


def test_a_refused_newcomer_is_told_so_before_the_file_is_even_checked(world, tool, api_as):
    before = stored()
    response = api_upload(api_as(world.mallory), TOOL, source=b"def train(:\n")
    assert response.status_code == 403
    assert response.json()["detail"] == PUBLISH_REFUSAL
    assert_unchanged(tool, before)


def test_a_demoted_owner_cannot_publish_either(world, tool, api_as):
    from mlopen.core.roles import set_role

    set_role(world.alice, "user")
    before = stored()
    response = api_new_version(api_as(world.alice), tool)
    assert response.status_code == 403
    assert response.json()["detail"] == "Uploading pipelines needs the author or admin role."
    assert_unchanged(tool, before)


def test_the_new_version_button_is_shown_only_to_those_who_may_publish(world, tool, web_as):
    link = f'href="/pipelines/upload/?name={TOOL}"'
    assert link in web_as(world.alice).get(f"/pipelines/{tool.pk}/").content.decode()
    assert link not in web_as(world.mallory).get(f"/pipelines/{tool.pk}/").content.decode()


# --- the owner, a maintainer and an admin publish --------------------------------------------------------


def test_the_owner_publishes_a_new_version(world, tool, api_as):
    response = api_new_version(api_as(world.alice), tool, source=GOOD)
    assert response.status_code == 201
    assert response.json()["version"] == 2


def test_a_maintainer_publishes_a_new_version_via_api_and_web(world, tool, api_as, web_as):
    tool.maintainers.add(world.mallory)
    response = api_new_version(api_as(world.mallory), tool)
    assert response.status_code == 201, response.content
    # A second, different file (an identical upload would just answer with v2, not publish v3).
    response = web_upload(web_as(world.mallory), TOOL, source=EVIL + b"# and again\n")
    assert response.status_code == 302
    assert list(tool.versions.order_by("number").values_list("number", "created_by__username")) == [
        (1, "alice"),
        (2, "mallory"),
        (3, "mallory"),
    ]
    assert default_storage.exists(f"pipelines/{tool.pk}/v3/evil.py")


def test_an_admin_publishes_a_new_version_of_anyones_pipeline(world, tool, api_as):
    response = api_upload(api_as(world.admin), TOOL, source=GOOD)
    assert response.status_code == 201, response.content
    assert response.json()["version"] == 2
    assert tool.versions.get(number=2).created_by == world.admin


def test_a_maintainer_without_the_author_role_cannot_publish(world, tool, api_as):
    tool.maintainers.add(world.carol)  # as an admin could, in the admin site
    before = stored()
    response = api_new_version(api_as(world.carol), tool)
    assert response.status_code == 403
    assert_unchanged(tool, before)


def test_a_maintainer_may_change_who_sees_the_pipeline(world, tool, web_as):
    world.team.user_set.add(world.mallory)
    tool.maintainers.add(world.mallory)
    response = web_as(world.mallory).post(f"/pipelines/{tool.pk}/visibility/", {"group": world.team.pk})
    assert response.status_code == 302
    tool.refresh_from_db()
    assert tool.private_group == world.team


# --- naming maintainers ----------------------------------------------------------------------------------


def test_the_owner_adds_and_removes_maintainers_via_api(world, tool, api_as):
    alice = api_as(world.alice)
    response = alice.patch(f"/api/v1/pipelines/{tool.pk}/", {"maintainers": ["mallory"]}, format="json")
    assert response.status_code == 200
    assert (response.json()["owner"], response.json()["maintainers"]) == ("alice", ["mallory"])
    assert api_new_version(api_as(world.mallory), tool).status_code == 201

    response = alice.patch(f"/api/v1/pipelines/{tool.pk}/", {"maintainers": []}, format="json")
    assert response.status_code == 200
    assert response.json()["maintainers"] == []
    response = api_new_version(api_as(world.mallory), tool)
    assert response.status_code == 403
    assert response.json()["detail"] == PUBLISH_REFUSAL
    assert tool.versions.count() == 2


def test_a_non_owner_cannot_change_maintainers_via_api(world, tool, api_as):
    response = api_as(world.mallory).patch(f"/api/v1/pipelines/{tool.pk}/", {"maintainers": ["mallory"]}, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": MAINTAINERS_REFUSAL, "errors": {}}
    assert list(tool.maintainers.all()) == []


def test_a_maintainer_cannot_name_more_maintainers(world, tool, api_as, django_user_model):
    from mlopen.core.roles import set_role

    friend = django_user_model.objects.create_user(username="trent", password=None)
    set_role(friend, "author")
    tool.maintainers.add(world.mallory)
    response = api_as(world.mallory).patch(
        f"/api/v1/pipelines/{tool.pk}/", {"maintainers": ["mallory", "trent"]}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["detail"] == MAINTAINERS_REFUSAL
    assert list(tool.maintainers.values_list("username", flat=True)) == ["mallory"]


def test_an_admin_changes_maintainers_via_api(world, tool, api_as):
    response = api_as(world.admin).patch(f"/api/v1/pipelines/{tool.pk}/", {"maintainers": ["mallory"]}, format="json")
    assert response.status_code == 200
    assert response.json()["maintainers"] == ["mallory"]


def test_only_authors_can_be_named_and_unknown_users_get_the_same_answer(world, tool, api_as):
    alice = api_as(world.alice)
    for name in ("carol", "nobody-by-that-name"):
        response = alice.patch(f"/api/v1/pipelines/{tool.pk}/", {"maintainers": [name]}, format="json")
        assert response.status_code == 400
        message = f"Not an author who can maintain pipelines: {name!r}. A maintainer needs the author role."
        assert response.json() == {"detail": message, "errors": {"maintainers": message}}
    assert list(tool.maintainers.all()) == []


def test_other_settings_cannot_be_changed_through_the_api(world, tool, api_as):
    response = api_as(world.alice).patch(
        f"/api/v1/pipelines/{tool.pk}/", {"maintainers": [], "queue": "gpu", "allow_network": True}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"allow_network", "queue"}
    tool.refresh_from_db()
    assert (tool.queue, tool.allow_network) == ("", False)


def test_the_owner_adds_and_removes_maintainers_on_the_pipeline_page(world, tool, web_as):
    alice = web_as(world.alice)
    page = alice.get(f"/pipelines/{tool.pk}/").content.decode()
    assert 'name="maintainers"' in page
    response = alice.post(f"/pipelines/{tool.pk}/", {"maintainers": "mallory"})
    assert response.status_code == 302
    assert response["Location"] == f"/pipelines/{tool.pk}/#maintainers"
    assert list(tool.maintainers.values_list("username", flat=True)) == ["mallory"]
    page = alice.get(f"/pipelines/{tool.pk}/").content.decode()
    assert '<span id="pipeline-maintainers">mallory</span>' in page

    alice.post(f"/pipelines/{tool.pk}/", {"maintainers": ""})
    assert list(tool.maintainers.all()) == []


def test_a_non_owner_cannot_change_maintainers_on_the_pipeline_page(world, tool, web_as):
    mallory = web_as(world.mallory)
    assert 'name="maintainers"' not in mallory.get(f"/pipelines/{tool.pk}/").content.decode()
    response = mallory.post(f"/pipelines/{tool.pk}/", {"maintainers": "mallory"})
    assert response.status_code == 403
    assert MAINTAINERS_REFUSAL.replace("'", "&#x27;") in response.content.decode()
    assert list(tool.maintainers.all()) == []


def test_an_admin_names_maintainers_in_the_admin_site(world, tool, web_as):
    page = web_as(world.admin).get(f"/admin/pipelines/pipeline/{tool.pk}/change/")
    assert page.status_code == 200
    assert 'name="maintainers"' in page.content.decode()


# --- a private pipeline one cannot see is not revealed ---------------------------------------------------


def test_uploading_under_the_name_of_a_private_pipeline_does_not_reveal_it(world, api_as, web_as):
    private = world.pipeline  # alice's, private to "team"; mallory is not in it
    taken = f"The name {private.name!r} is taken; choose another."
    before = stored()

    response = api_upload(api_as(world.mallory), private.name)
    assert response.status_code == 400
    assert response.json() == {"detail": taken, "errors": {"name": taken}}

    response = web_upload(web_as(world.mallory), private.name)
    assert response.status_code == 400
    assert response.context["form"].errors["name"] == [taken]
    page = response.content.decode()
    for hint in ("Only the owner", "cannot see", private.description):
        assert hint not in page, hint

    assert list(private.versions.values_list("number", flat=True)) == [1]
    assert stored() == before


def test_a_private_pipelines_maintainers_are_not_shown_to_others(world, api_as):
    world.pipeline.maintainers.add(world.admin)
    response = api_as(world.mallory).patch(
        f"/api/v1/pipelines/{world.pipeline.pk}/", {"maintainers": []}, format="json"
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "errors": {}}
    assert list(world.pipeline.maintainers.all()) == [world.admin]


def test_a_maintainer_sees_a_private_pipeline_to_publish_it(world, api_as):
    private = make_pipeline("private-tool", created_by=world.alice, private_group=world.team)
    mallory = api_as(world.mallory)
    assert mallory.get(f"/api/v1/pipelines/{private.pk}/").status_code == 404
    private.maintainers.add(world.mallory)
    assert mallory.get(f"/api/v1/pipelines/{private.pk}/").status_code == 200
    assert api_new_version(mallory, private, source=GOOD).status_code == 201
