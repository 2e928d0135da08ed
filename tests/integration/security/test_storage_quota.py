"""Per-user storage quota: MLOPEN_USER_QUOTA_MB by default, an admin-set StorageQuota otherwise.

An upload that does not fit is refused with 413 and a message saying the quota and the usage,
and nothing of it is left in storage.
"""

from __future__ import annotations

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mlopen.datasets import services
from mlopen.datasets.models import Dataset, StorageQuota

pytestmark = pytest.mark.django_db

KB = 1024


@pytest.fixture(autouse=True)
def one_megabyte_quota(settings):
    settings.MLOPEN_USER_QUOTA_MB = 1


def _files_of(settings, user) -> list[str]:
    root = settings.MLOPEN_STORAGE_DIR / "datasets" / str(user.pk)
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def _upload(client, name: str, size: int):
    return client.post("/api/v1/datasets/", {"file": SimpleUploadedFile(name, b"x" * size)}, format="multipart")


def test_an_upload_past_the_quota_is_413_saying_the_quota_and_the_usage(api_for, user, settings):
    client = api_for(user)
    assert _upload(client, "first.txt", 600 * KB).status_code == 201
    before = _files_of(settings, user)
    response = _upload(client, "second.txt", 600 * KB)
    assert response.status_code == 413
    assert response.json()["detail"].startswith(
        "Storage quota of 1 MB exceeded: you use 0.6 MB and this file is 0.6 MB."
    )
    assert Dataset.objects.filter(owner=user).count() == 1
    assert _files_of(settings, user) == before


def test_an_admin_set_quota_replaces_the_default(api_for, user):
    StorageQuota.objects.create(user=user, megabytes=2)
    client = api_for(user)
    assert _upload(client, "a.txt", 900 * KB).status_code == 201
    assert _upload(client, "b.txt", 900 * KB).status_code == 201
    assert _upload(client, "c.txt", 900 * KB).status_code == 413


def test_a_quota_of_zero_means_no_limit(user):
    StorageQuota.objects.create(user=user, megabytes=0)
    services.store_dataset(owner=user, name="big", filename="big.txt", chunks=[b"x" * (3 * 1024 * KB)])
    assert services.storage_usage(user).limit is None


def test_a_file_announced_too_large_is_refused_before_a_byte_is_stored(user):
    def never_read():
        raise AssertionError("the upload was read")
        yield b""  # pragma: no cover

    with pytest.raises(services.DatasetRejected) as refused:
        services.store_dataset(owner=user, name="big", filename="big.txt", chunks=never_read(), size=2 * 1024 * KB)
    assert refused.value.status == 413


def test_a_file_of_unknown_size_is_checked_on_what_arrived_before_it_is_moved_into_place(user, settings):
    before = _files_of(settings, user)  # other tests' files (the database is rolled back, storage is not)
    with pytest.raises(services.DatasetRejected):
        services.store_dataset(owner=user, name="big", filename="big.txt", chunks=[b"x" * (1100 * KB)])
    assert _files_of(settings, user) == before
    assert not Dataset.objects.exists()


def test_demo_datasets_do_not_count_against_their_owners_quota(user):
    demo = services.store_dataset(owner=user, name="demo", filename="demo.txt", chunks=[b"x" * (900 * KB)])
    Dataset.objects.filter(pk=demo.pk).update(is_demo=True)
    assert services.storage_usage(user).used == 0


def test_the_datasets_page_shows_the_usage_against_the_quota(alice_client_with_data):
    page = alice_client_with_data.get("/datasets/").content.decode()
    assert 'id="storage-usage"' in page
    assert "500.0\xa0KB of 1.0\xa0MB used" in page
    assert 'aria-valuenow="49"' in page


def test_an_upload_past_the_quota_through_the_page_says_why(alice_client_with_data):
    response = alice_client_with_data.post(
        "/datasets/upload/", {"file": SimpleUploadedFile("more.txt", b"x" * (600 * KB)), "name": ""}
    )
    assert response.status_code == 413
    assert "Storage quota of 1 MB exceeded: you use 0.5 MB" in response.content.decode()


def test_admins_edit_quotas_in_the_admin_site(admin_user, user, client):
    client.force_login(admin_user)
    response = client.post("/admin/datasets/storagequota/add/", {"user": user.pk, "megabytes": 5})
    assert response.status_code == 302
    assert StorageQuota.objects.get(user=user).megabytes == 5
    assert b"alice" in client.get("/admin/datasets/storagequota/").content


@pytest.fixture
def alice_client_with_data(client, user):
    services.store_dataset(owner=user, name="half", filename="half.txt", chunks=[b"x" * (500 * KB)])
    client.force_login(user)
    return client
