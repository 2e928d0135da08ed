"""Pipeline pages: list, detail, and upload with refusals shown next to the field at fault."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mlopen.pipelines.models import Pipeline, TrainedModel

pytestmark = pytest.mark.django_db

GOOD = b"def train(inpt, params=None):\n    pass\n\ndef run_pipeline(input, model, args, params=None):\n    return {}\n"


def test_pipeline_list_shows_each_pipeline_with_train_and_run_buttons(alice_client, make_pipeline):
    pipeline = make_pipeline("iris")
    page = alice_client.get("/pipelines/").content.decode()
    assert "iris" in page and "Classifies iris flowers." in page
    assert f"/runs/new/?pipeline={pipeline.pk}&amp;kind=train" in page
    assert f"/runs/new/?pipeline={pipeline.pk}&amp;kind=run" in page
    assert "Upload a pipeline" not in page  # alice is a plain user


def test_pipeline_list_empty_state_tells_an_author_to_upload(client_for, author):
    page = client_for(author).get("/pipelines/").content.decode()
    assert "No pipelines yet" in page
    assert 'href="/pipelines/upload/"' in page


def test_pipeline_detail_shows_parameters_versions_and_models(client_for, user, outsider, make_pipeline, make_run):
    pipeline = make_pipeline(
        "iris",
        params_train=[{"name": "epochs", "type": "integer", "default": 3}],
        params_run=[{"name": "method", "type": "choice", "choices": ["fast", "exact"]}],
    )
    version = pipeline.latest_version
    version.support_files = ["helpers.py"]
    version.save()
    mine = make_run(user, pipeline, kind="train")
    theirs = make_run(outsider, pipeline, kind="train")
    TrainedModel.objects.create(
        pipeline=pipeline,
        version=version,
        run=mine,
        number=1,
        artifact="m1",
        size=2048,
        label="iris.py",
        model_names=["clf"],
    )
    TrainedModel.objects.create(pipeline=pipeline, version=version, run=theirs, number=2, artifact="m2", size=10)

    page = client_for(user).get(f"/pipelines/{pipeline.pk}/").content.decode()
    assert "<code>epochs</code>" in page and "<code>3</code>" in page
    assert "<code>method</code>" in page and "fast, exact" in page and "required" in page
    assert "iris.py" in page and "helpers.py" in page
    assert f'href="/runs/{mine.pk}/"' in page  # the run that made model #1 is alice's: linked
    assert f'href="/runs/{theirs.pk}/"' not in page and f"run {theirs.pk}" in page  # someone else's: named only
    assert "2.0\xa0KB" in page
    assert "trained (model #2)" in page


def test_unknown_pipeline_is_404(alice_client):
    assert alice_client.get("/pipelines/9999/").status_code == 404


def test_plain_user_gets_403_on_upload_page(alice_client):
    assert alice_client.get("/pipelines/upload/").status_code == 403
    response = alice_client.post("/pipelines/upload/", {"control": SimpleUploadedFile("p.py", GOOD)})
    assert response.status_code == 403
    assert b"You are not allowed to do that" in response.content
    assert not Pipeline.objects.exists()


def test_author_uploads_control_and_support_files(client_for, author):
    response = client_for(author).post(
        "/pipelines/upload/",
        {
            "control": SimpleUploadedFile("wordcount.py", GOOD),
            "support_files": [SimpleUploadedFile("helpers.py", b"X = 1\n"), SimpleUploadedFile("vocab.txt", b"a\nb\n")],
            "name": "",
            "description": "Counts words.",
        },
    )
    pipeline = Pipeline.objects.get(name="wordcount")
    assert response.status_code == 302 and response["Location"] == f"/pipelines/{pipeline.pk}/"
    assert pipeline.latest_version.support_files == ["helpers.py", "vocab.txt"]
    assert pipeline.description == "Counts words."


@pytest.mark.parametrize(
    ("files", "name", "field", "message"),
    [
        ({"control": ("broken.py", b"def train(:\n")}, "", "control", "Syntax error in broken.py at line 1"),
        ({"control": ("half.py", b"def train(inpt):\n    pass\n")}, "", "control", "half.py must define run_pipeline"),
        ({"control": ("ok.py", GOOD)}, "no/slashes", "name", "Pipeline names are 1-100 characters"),
        ({"control": ("ok.py", GOOD), "support_files": [("ok.py", b"")]}, "", "support_files", "Two files are named"),
    ],
)
def test_upload_refusal_is_shown_next_to_its_field(client_for, author, files, name, field, message):
    data = {"name": name}
    for key, value in files.items():
        data[key] = (
            [SimpleUploadedFile(*item) for item in value] if isinstance(value, list) else SimpleUploadedFile(*value)
        )
    response = client_for(author).post("/pipelines/upload/", data)
    assert response.status_code == 400
    form = response.context["form"]
    assert any(message in error for error in form.errors[field]), form.errors
    # On the page, the message is the feedback right under that field's (red-marked) input.
    page = response.content.decode()
    widget_at = page.index(f'name="{field}"')
    feedback_at = page.index('class="invalid-feedback d-block"', widget_at)
    next_label = page.find('class="form-label', widget_at)
    assert next_label == -1 or feedback_at < next_label
    assert page[feedback_at:].split(">", 1)[1].startswith(message)
    assert "is-invalid" in page[page.rindex("<input", 0, widget_at) : page.index(">", widget_at)]
    assert not Pipeline.objects.exists()


def test_upload_without_a_control_file_says_it_is_required(client_for, author):
    response = client_for(author).post("/pipelines/upload/", {"name": "x"})
    assert response.status_code == 400
    assert response.context["form"].errors["control"] == ["This field is required."]


@pytest.mark.parametrize(
    ("own", "platform", "says"),
    [
        (None, 0, "kept <strong>until someone deletes them</strong>"),
        (None, 30, "kept <strong>30 days</strong>"),
        (7, 30, "kept <strong>7 days</strong>"),
        (0, 30, "kept <strong>until someone deletes them</strong>"),
        (1, 0, "kept <strong>1 day</strong>"),
    ],
)
def test_pipeline_detail_says_how_long_finished_runs_are_kept(
    client_for, user, make_pipeline, settings, own, platform, says
):
    settings.MLOPEN_RETENTION_DAYS = platform
    pipeline = make_pipeline("iris")
    Pipeline.objects.filter(pk=pipeline.pk).update(retention_days=own)

    page = client_for(user).get(f"/pipelines/{pipeline.pk}/").content.decode()

    assert says in page
    assert ("this pipeline's setting" in page) == (own is not None)
    assert ("the platform's <code>MLOPEN_RETENTION_DAYS</code>" in page) == (own is None)
