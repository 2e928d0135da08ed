"""Uploading exactly what is there already answers with it (200 and a message) instead of a copy."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mlopen.datasets.models import Dataset
from mlopen.pipelines.models import PipelineVersion

pytestmark = pytest.mark.django_db

CONTROL = (
    b"def train(inpt, params=None):\n    pass\n\ndef run_pipeline(inpt, model, args, params=None):\n    return {}\n"
)


def _post_pipeline(api, control=CONTROL, support=b"X = 1\n", url="/api/v1/pipelines/"):
    files = {
        "control": SimpleUploadedFile("same.py", control),
        "support_files": [SimpleUploadedFile("util.py", support)],
    }
    return api.post(url, files, format="multipart")


def test_same_pipeline_files_again_answer_with_the_latest_version(api):
    first = _post_pipeline(api)
    assert first.status_code == 201, first.content
    again = _post_pipeline(api)
    assert again.status_code == 200, again.content
    body = again.json()
    assert body["unchanged"] is True and body["version"] == 1 and body["id"] == first.json()["id"]
    assert body["message"] == (
        "Nothing changed: these files are exactly those of same version 1, so no new version was made."
    )
    through_versions = _post_pipeline(api, url=f"/api/v1/pipelines/{body['id']}/versions/")
    assert through_versions.status_code == 200 and through_versions.json()["version"] == 1
    assert PipelineVersion.objects.filter(pipeline__name="same").count() == 1


def test_a_changed_support_file_or_control_file_is_a_new_version(api):
    assert _post_pipeline(api).status_code == 201
    changed_support = _post_pipeline(api, support=b"X = 2\n")
    assert changed_support.status_code == 201 and changed_support.json()["version"] == 2
    changed_control = _post_pipeline(api, control=CONTROL + b"# tuned\n", support=b"X = 2\n")
    assert changed_control.status_code == 201 and changed_control.json()["version"] == 3
    # Back to the first files: not the latest version's, so a new version too.
    assert _post_pipeline(api).json()["version"] == 4


def test_a_missing_support_file_is_a_new_version(api):
    assert _post_pipeline(api).status_code == 201
    alone = api.post("/api/v1/pipelines/", {"control": SimpleUploadedFile("same.py", CONTROL)}, format="multipart")
    assert alone.status_code == 201 and alone.json()["version"] == 2


def test_same_dataset_bytes_and_name_again_answer_with_the_existing_dataset(api_for, user, upload_dataset):
    alice = api_for(user)
    first = upload_dataset("prices.csv", b"a,b\n1,2\n", client=alice)
    again = alice.post(
        "/api/v1/datasets/", {"file": SimpleUploadedFile("prices.csv", b"a,b\n1,2\n"), "name": "prices.csv"}
    )
    assert again.status_code == 200, again.content
    assert again.json()["id"] == first["id"] and again.json()["unchanged"] is True
    assert f"(dataset {first['id']})" in again.json()["message"]
    assert Dataset.objects.filter(owner=user).count() == 1


def test_other_bytes_another_name_or_another_owner_make_a_new_dataset(api_for, user, django_user_model, upload_dataset):
    alice = api_for(user)
    bob = api_for(django_user_model.objects.create_user(username="bob", password="bob-password-1"))
    first = upload_dataset("prices.csv", b"a,b\n1,2\n", client=alice)
    assert upload_dataset("prices.csv", b"a,b\n1,3\n", client=alice)["id"] != first["id"]
    assert upload_dataset("copy.csv", b"a,b\n1,2\n", client=alice)["id"] != first["id"]
    assert upload_dataset("prices.csv", b"a,b\n1,2\n", client=bob)["id"] != first["id"]
    assert Dataset.objects.count() == 4
