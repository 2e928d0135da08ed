"""Zip-slip, symlink entries and zip bombs in uploaded datasets.

A zip upload is stored as one file and never extracted by the web process: its page lists the
entries from the central directory. A pipeline that asks for the folder (``input.extract()``,
in its own child process) gets every entry checked first; these tests extract the stored upload
the way the child does. tests/unit/runner/test_archives.py has the finer cases.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mlopen.core import storage
from mlopen.datasets.models import Dataset
from mlopen_runner.archives import UnsafeArchive
from mlopen_runner.inputs import InputFile

pytestmark = pytest.mark.django_db


def zip_bytes(entries) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo("placeholder")
            info.filename = name  # set afterwards: ZipInfo() would normalize the hostile name
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


SLIP = zip_bytes([("fine.txt", "fine", 0), ("../../../escaped.txt", "evil", 0)])
ABSOLUTE = zip_bytes([("/tmp/mlopen-absolute-escape.txt", "evil", 0)])
BACKSLASH = zip_bytes([("..\\..\\escaped.txt", "evil", 0)])
SYMLINK = zip_bytes([("link", "/etc/passwd", stat.S_IFLNK | 0o777), ("link/passwd-copy", "x", 0)])
BOMB = zip_bytes([(f"zeros-{i}.bin", b"\0" * (8 * 1024 * 1024), 0) for i in range(4)])  # 32 MB in ~32 KB


def upload(client, name: str, content: bytes) -> Dataset:
    response = client.post("/api/v1/datasets/", {"file": SimpleUploadedFile(name, content)}, format="multipart")
    assert response.status_code == 201, response.content
    return Dataset.objects.get(pk=response.json()["id"])


@pytest.mark.parametrize(
    "content, refusal",
    [
        (SLIP, "points outside the archive folder"),
        (ABSOLUTE, "is an absolute path"),
        (BACKSLASH, "points outside the archive folder"),
        (SYMLINK, "is a link or special file"),
    ],
)
def test_a_hostile_zip_is_stored_whole_and_refused_when_extracted(api_for, user, tmp_path, content, refusal):
    dataset = upload(api_for(user), "hostile.zip", content)
    assert dataset.kind == "zip"
    folder = storage.local_path(dataset.file).parent
    assert os.listdir(folder) == ["hostile.zip"]  # nothing was extracted on upload
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(UnsafeArchive, match=refusal):
        InputFile(str(storage.local_path(dataset.file)), dataset.filename).extract(str(work / "extracted"))
    assert list(tmp_path.rglob("escaped.txt")) == [] and not Path("/tmp/mlopen-absolute-escape.txt").exists()
    assert list(work.iterdir()) == []


def test_a_zip_bomb_is_stored_as_uploaded_and_stopped_while_extracting(api_for, user, tmp_path):
    assert len(BOMB) < 200_000
    dataset = upload(api_for(user), "bomb.zip", BOMB)
    assert dataset.size == len(BOMB)
    preview = api_for(user).get(f"/api/v1/datasets/{dataset.pk}/preview/").json()
    assert preview["rows"][0] == ["zeros-0.bin", 8 * 1024 * 1024]  # from the directory, nothing inflated
    from mlopen_runner.archives import extract_zip

    with pytest.raises(UnsafeArchive, match="more than 16 MB"):
        extract_zip(str(storage.local_path(dataset.file)), str(tmp_path / "out"), max_bytes=16 * 1024 * 1024)
    assert not (tmp_path / "out").exists()


def test_the_zip_listing_page_shows_hostile_entry_names_as_text(client, user):
    from mlopen.datasets.services import store_dataset

    dataset = store_dataset(owner=user, name="z", filename="z.zip", chunks=[SLIP])
    client.force_login(user)
    html = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "<td>../../../escaped.txt</td>" in html
