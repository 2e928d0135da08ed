"""Dataset pages: the owner's list, upload, preview and delete; another user's dataset is a 404."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mlopen.datasets.models import Dataset
from mlopen.datasets.services import store_dataset

pytestmark = pytest.mark.django_db

CSV = b"name,value\nalpha,1\nbeta,2\ngamma,3\n"


def stored(owner, name="flowers.csv", content=CSV, **fields):
    dataset = store_dataset(owner=owner, name=name, filename=name, chunks=[content])
    if fields:
        Dataset.objects.filter(pk=dataset.pk).update(**fields)
        dataset.refresh_from_db()
    return dataset


def test_dataset_list_shows_name_size_kind_and_owner(alice_client, user):
    stored(user, content=CSV * 400)
    page = alice_client.get("/datasets/").content.decode()
    assert "flowers.csv" in page and "CSV table" in page and "alice" in page
    assert "13.3\xa0KB" in page
    assert "just now" in page


def test_dataset_list_empty_state_says_what_to_do(alice_client):
    page = alice_client.get("/datasets/").content.decode()
    assert "No datasets yet" in page and "Upload a file" in page


def test_dataset_list_hides_other_users_datasets_but_shows_demo_ones(alice_client, outsider):
    stored(outsider, name="secret.csv")
    stored(outsider, name="iris-demo.csv", is_demo=True)
    page = alice_client.get("/datasets/").content.decode()
    assert "secret.csv" not in page
    assert "iris-demo.csv" in page


def test_upload_stores_the_file_and_opens_its_preview(alice_client, user):
    response = alice_client.post("/datasets/upload/", {"file": SimpleUploadedFile("prices.csv", CSV), "name": "Prices"})
    dataset = Dataset.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == f"/datasets/{dataset.pk}/"
    assert (dataset.name, dataset.filename, dataset.kind, dataset.size) == ("Prices", "prices.csv", "csv", len(CSV))


def test_upload_without_a_file_shows_the_error_on_the_file_field(alice_client):
    response = alice_client.post("/datasets/upload/", {"name": "nothing"})
    assert response.status_code == 400
    assert response.context["form"].errors == {"file": ["This field is required."]}
    assert "is-invalid" in response.content.decode()


def test_upload_refusal_from_the_service_is_shown_on_its_field(alice_client):
    response = alice_client.post("/datasets/upload/", {"file": SimpleUploadedFile("a.csv", CSV), "name": "n" * 201})
    assert response.status_code == 400
    assert "at most 200" in response.context["form"].errors["name"][0]


def test_csv_preview_is_a_table_of_the_first_rows(alice_client, user):
    dataset = stored(user)
    page = alice_client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "<th>name</th><th>value</th>" in page
    assert "<td>beta</td><td>2</td>" in page
    assert "The first 3 rows" in page


def test_text_preview_shows_the_first_lines(alice_client, user):
    dataset = stored(user, name="notes.txt", content=b"first line\nsecond <b>line</b>\n")
    page = alice_client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "first line\nsecond &lt;b&gt;line&lt;/b&gt;\n" in page


def test_other_users_dataset_is_404(alice_client, outsider):
    dataset = stored(outsider)
    assert alice_client.get(f"/datasets/{dataset.pk}/").status_code == 404
    assert alice_client.get(f"/datasets/{dataset.pk}/delete/").status_code == 404
    assert alice_client.post(f"/datasets/{dataset.pk}/delete/").status_code == 404
    assert Dataset.objects.filter(pk=dataset.pk).exists()


def test_demo_dataset_can_be_seen_but_not_deleted_by_others(alice_client, outsider):
    dataset = stored(outsider, name="demo.csv", is_demo=True)
    page = alice_client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "<th>name</th>" in page and "/delete/" not in page
    assert alice_client.post(f"/datasets/{dataset.pk}/delete/").status_code == 404
    assert Dataset.objects.filter(pk=dataset.pk).exists()


def test_owner_deletes_after_confirming(alice_client, user):
    dataset = stored(user)
    confirm = alice_client.get(f"/datasets/{dataset.pk}/delete/")
    assert b"Delete \xe2\x80\x9cflowers.csv\xe2\x80\x9d?" in confirm.content
    assert Dataset.objects.filter(pk=dataset.pk).exists()
    detail = alice_client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert 'data-confirm="Delete the dataset' in detail  # app.js asks before the POST
    response = alice_client.post(f"/datasets/{dataset.pk}/delete/", follow=True)
    assert response.redirect_chain == [("/datasets/", 302)]
    assert "is deleted" in response.content.decode()
    assert not Dataset.objects.filter(pk=dataset.pk).exists()


def test_admin_may_delete_anyones_dataset(client_for, admin_user, user):
    dataset = stored(user)
    assert client_for(admin_user).post(f"/datasets/{dataset.pk}/delete/").status_code == 302
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
