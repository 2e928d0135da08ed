"""The API side of a first run: an author marks a pipeline's input as required; a run without it is a 400."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen.runs.models import Run

pytestmark = pytest.mark.django_db

RUN = b"\n\ndef run_pipeline(input, model, args, params=None):\n    return {'text': 'ok'}\n"
SAVES = (
    b"from mlopenapp.utils import io_handler as io\n\n"
    b"def train(inpt, params=None):\n    io.save_pipeline([], {}, 'x')\n" + RUN
)
SAVES_NOTHING = b"def train(inpt, params=None):\n    pass\n" + RUN


def test_a_run_without_the_required_input_is_a_400_saying_what_to_fix(api, make_pipeline):
    pipeline = make_pipeline(name="counter")
    Pipeline.objects.filter(pk=pipeline.pk).update(input_required=True)
    response = api.post("/api/v1/runs/", {"pipeline": "counter"}, format="json")
    assert response.status_code == 400
    message = "counter needs an input dataset: choose one of your datasets or upload a file."
    assert response.json() == {"detail": message, "errors": {"input": message}}
    assert not Run.objects.exists()


def test_a_run_without_an_optional_input_is_queued(api, make_pipeline):
    make_pipeline(name="counter")
    assert api.post("/api/v1/runs/", {"pipeline": "counter"}, format="json").status_code == 201


def test_an_upload_marks_its_input_required_and_a_new_version_leaves_it_unchanged(api):
    response = api.post(
        "/api/v1/pipelines/",
        {"control": SimpleUploadedFile("needs.py", SAVES_NOTHING), "input_required": "true"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json()["input_required"] is True
    again = api.post(
        f"/api/v1/pipelines/{response.json()['id']}/versions/",
        {"control": SimpleUploadedFile("needs.py", SAVES_NOTHING + b"# version 2\n")},  # identical: no version
        format="multipart",
    )
    assert again.status_code == 201 and again.json()["version"] == 2 and again.json()["input_required"] is True


def test_an_upload_reads_whether_the_pipeline_saves_a_model(api):
    for name, source in (("saver", SAVES), ("explorer", SAVES_NOTHING)):
        response = api.post(
            "/api/v1/pipelines/", {"control": SimpleUploadedFile(f"{name}.py", source)}, format="multipart"
        )
        assert response.status_code == 201, response.content
    assert PipelineVersion.objects.get(pipeline__name="saver").saves_model is True
    assert PipelineVersion.objects.get(pipeline__name="explorer").saves_model is False


def test_who_may_publish_changes_input_required_and_others_get_403(api, api_for, author, user, make_pipeline):
    pipeline = make_pipeline(name="counter")
    Pipeline.objects.filter(pk=pipeline.pk).update(created_by=author)
    response = api_for(author).patch(f"/api/v1/pipelines/{pipeline.pk}/", {"input_required": True}, format="json")
    assert response.status_code == 200 and response.json()["input_required"] is True
    refused = api_for(user).patch(f"/api/v1/pipelines/{pipeline.pk}/", {"input_required": False}, format="json")
    assert refused.status_code == 403
    pipeline.refresh_from_db()
    assert pipeline.input_required is True


def test_an_update_with_nothing_to_change_is_a_400(api, make_pipeline):
    pipeline = make_pipeline(name="counter")
    assert api.patch(f"/api/v1/pipelines/{pipeline.pk}/", {}, format="json").status_code == 400
