"""The upload pages: exactly what is there already opens it, with a notice, and makes no copy."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mlopen.datasets.models import Dataset
from mlopen.pipelines.models import Pipeline

pytestmark = pytest.mark.django_db

CONTROL = (
    b"def train(inpt, params=None):\n    pass\n\ndef run_pipeline(inpt, model, args, params=None):\n    return {}\n"
)


def test_same_pipeline_upload_on_the_page_opens_the_pipeline_with_a_notice(client_for, author):
    client = client_for(author)
    for _ in range(2):
        response = client.post("/pipelines/upload/", {"control": SimpleUploadedFile("twice.py", CONTROL), "name": ""})
    pipeline = Pipeline.objects.get(name="twice")
    assert response.status_code == 302 and response["Location"] == f"/pipelines/{pipeline.pk}/"
    assert pipeline.versions.count() == 1
    page = client.get(response["Location"]).content.decode()
    assert "Nothing changed: these files are exactly those of twice version 1, so no new version was made." in page


def test_same_dataset_upload_on_the_page_opens_the_existing_dataset_with_a_notice(alice_client, user):
    for _ in range(2):
        response = alice_client.post(
            "/datasets/upload/", {"file": SimpleUploadedFile("prices.csv", b"a,b\n1,2\n"), "name": "Prices"}
        )
    dataset = Dataset.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == f"/datasets/{dataset.pk}/"
    page = alice_client.get(response["Location"]).content.decode()
    assert f"You uploaded exactly this file as “Prices” already (dataset {dataset.pk})" in page
