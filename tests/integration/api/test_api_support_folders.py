"""Support folders through the API: files keep their paths, bad paths are refused naming the file
with nothing stored, and a version's files can be listed and read by whoever may run the pipeline."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

from mlopen.core import storage
from mlopen.pipelines.models import Pipeline, PipelineVersion

pytestmark = pytest.mark.django_db

# Imports its helper from a subpackage at load time: the upload's own get_params check proves the
# subfolder is beside it in the sandbox.
CONTROL = b"""from textnet.model import WIDTH


def get_params(run=True):
    return {"width": ("integer", {"default": WIDTH})}


def train(inpt, params=None):
    pass


def run_pipeline(input, model, args, params=None):
    return {}
"""
SUPPORT = {
    "textnet/__init__.py": b"",
    "textnet/model.py": b"WIDTH = 7\n",
    "nltk_data/corpora/stopwords/english": b"a\nthe\n",
    "yolo-control/hyp.yaml": b"lr: 0.01\n",
}


@pytest.fixture
def upload(api_for, author, multipart_body):
    """POST a control file and support files (name -> bytes, names sent as given) as ``author``."""

    def post(
        support: dict[str, bytes] | list[tuple[str, bytes]], *, name="textnet", control=CONTROL, url=None, zip_file=None
    ):
        items = support.items() if isinstance(support, dict) else support
        files = [("control", "textnet_control.py", control), *[("support_files", n, data) for n, data in items]]
        if zip_file is not None:
            files.append(("support_zip", "support.zip", zip_file))
        body, content_type = multipart_body({"name": name} if url is None else {}, files)
        return api_for(author).generic("POST", url or "/api/v1/pipelines/", body, content_type)

    return post


def _stored(version: PipelineVersion) -> dict[str, bytes]:
    """The version's files as stored, by path."""
    folder = storage.local_folder(version.folder)
    return {path: (folder / path).read_bytes() for path in [version.control_filename, *version.support_files]}


def test_support_files_sent_with_paths_are_kept_under_those_paths(upload):
    response = upload(SUPPORT)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["versions"][0]["files"] == ["textnet_control.py", *SUPPORT]
    assert body["params"]["run"]["width"]["default"] == 7
    version = PipelineVersion.objects.get(pipeline__name="textnet")
    assert version.support_files == list(SUPPORT)
    assert _stored(version) == {"textnet_control.py": CONTROL, **SUPPORT}


def test_an_empty_init_py_is_accepted(upload):
    response = upload({"textnet/__init__.py": b"", "textnet/model.py": b"WIDTH = 1\n"})
    assert response.status_code == 201, response.content
    assert _stored(PipelineVersion.objects.get())["textnet/__init__.py"] == b""


def _zip(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def test_a_zip_of_support_files_is_unpacked_beside_the_control_file(upload):
    response = upload({"notes.txt": b"n\n"}, zip_file=_zip({**SUPPORT, ".git/config": b"x", "__MACOSX/._a": b"x"}))
    assert response.status_code == 201, response.content
    version = PipelineVersion.objects.get()
    assert sorted(version.support_files) == sorted(["notes.txt", *SUPPORT])
    assert _stored(version) == {"textnet_control.py": CONTROL, "notes.txt": b"n\n", **SUPPORT}


BAD = [
    ("../escape.py", "has '..' in its path"),
    ("textnet/../../escape.py", "has '..' in its path"),
    ("/tmp/escape.py", "has an absolute path"),
    ("esc\x00ape.py", "has a NUL byte"),
    ("..\\..\\escape.py", "has a backslash"),
    ("textnet\\model.py", "has a backslash"),
    ("..／..／escape.py", "has '..' in its path"),
    (".env", "is hidden"),
]


@pytest.fixture
def published(upload):
    """Version 1 of the pipeline, stored: every refused upload below must leave it as it is."""
    assert upload(SUPPORT).status_code == 201
    pipeline = Pipeline.objects.get(name="textnet")
    version = pipeline.latest_version
    return pipeline, version, _stored(version)


def _nothing_lost(published) -> None:
    pipeline, version, files = published
    assert list(pipeline.versions.values_list("number", flat=True)) == [1]
    assert _stored(version) == files


@pytest.mark.parametrize(("name", "reason"), BAD)
def test_a_bad_support_path_is_refused_with_400_naming_it_and_nothing_is_lost(upload, published, name, reason):
    response = upload([*SUPPORT.items(), (name, b"x = 1\n")], url=f"/api/v1/pipelines/{published[0].pk}/versions/")
    assert response.status_code == 400, response.content
    body = response.json()
    assert reason in body["detail"] and repr(name) in body["detail"]
    assert body["errors"] == {"support_files": body["detail"]}
    _nothing_lost(published)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([("textnet/model.py", b"1"), ("textnet/model.py", b"2")], "Two files are named 'textnet/model.py'"),
        (
            [("textnet_control.py", b"x")],
            "Two files are named 'textnet_control.py': the control file and a support file",
        ),
        ([("TextNet/model.py", b"1"), ("textnet/model.py", b"2")], "differ only in upper/lower case"),
        ([("textnet", b"1"), ("textnet/model.py", b"2")], "'textnet' is both a file and a folder"),
    ],
)
def test_duplicate_support_paths_are_refused_and_nothing_is_lost(upload, published, files, message):
    response = upload(files, url=f"/api/v1/pipelines/{published[0].pk}/versions/")
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    _nothing_lost(published)


@pytest.mark.parametrize(
    ("zip_file", "message"),
    [
        (_zip({"../escape.py": b"x"}), "support.zip: zip entry '../escape.py' points outside the archive folder"),
        (_zip({}, {"textnet/link": "/etc/passwd"}), "support.zip: zip entry 'textnet/link' is a link or special file"),
        (_zip({"textnet/model.py": b"x"}), "Two files are named 'textnet/model.py'"),
        (b"not a zip", "support.zip is not a zip file that can be read"),
    ],
)
def test_a_bad_zip_is_refused_with_400_naming_the_entry_and_nothing_is_lost(upload, published, zip_file, message):
    response = upload(SUPPORT, url=f"/api/v1/pipelines/{published[0].pk}/versions/", zip_file=zip_file)
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    _nothing_lost(published)


def test_a_requirements_txt_in_a_subfolder_is_an_ordinary_support_file(upload):
    response = upload({**SUPPORT, "docs/requirements.txt": b"numpy\n"})
    assert response.status_code == 201, response.content
    version = PipelineVersion.objects.get()
    assert "docs/requirements.txt" in version.support_files and version.requirements == ""


# --- Reading a version's files -----------------------------------------------------------------


@pytest.fixture
def team_pipeline(upload, author, django_user_model):
    """ada's pipeline, private to her group "team" (with carol in it); mallory is outside."""
    from django.contrib.auth.models import Group

    assert upload(SUPPORT).status_code == 201
    pipeline = Pipeline.objects.get(name="textnet")
    team = Group.objects.create(name="team")
    carol = django_user_model.objects.create_user(username="carol", password=None)
    mallory = django_user_model.objects.create_user(username="mallory", password=None)
    team.user_set.add(author, carol)
    pipeline.private_group = team
    pipeline.save()
    return pipeline, carol, mallory


def test_the_files_of_a_version_are_listed_with_their_sizes(api_for, author, team_pipeline):
    pipeline, carol, _ = team_pipeline
    for person in (author, carol):
        response = api_for(person).get(f"/api/v1/pipelines/{pipeline.pk}/versions/1/files/")
        assert response.status_code == 200
        assert response.json() == {
            "version": 1,
            "control_filename": "textnet_control.py",
            "files": [
                {"path": "textnet_control.py", "size": len(CONTROL), "control": True},
                *[{"path": p, "size": len(SUPPORT[p]), "control": False} for p in sorted(SUPPORT)],
            ],
        }


def test_a_file_of_a_version_is_downloaded_as_stored(api_for, author, team_pipeline):
    pipeline, carol, _ = team_pipeline
    response = api_for(carol).get(f"/api/v1/pipelines/{pipeline.pk}/versions/1/files/textnet/model.py")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"WIDTH = 7\n"
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="model.py"'


@pytest.mark.parametrize(
    "path", ["nothing.py", "textnet", "../../../etc/passwd", "textnet/../textnet_control.py", "%2e%2e/x"]
)
def test_a_path_the_version_does_not_list_is_a_404(api_for, author, team_pipeline, path):
    pipeline, _, _ = team_pipeline
    response = api_for(author).get(f"/api/v1/pipelines/{pipeline.pk}/versions/1/files/{path}")
    assert response.status_code == 404


def test_an_outsider_gets_404_for_the_files_of_a_pipeline_they_cannot_see(api_for, team_pipeline):
    pipeline, _, mallory = team_pipeline
    client = api_for(mallory)
    for url in (
        f"/api/v1/pipelines/{pipeline.pk}/versions/1/files/",
        f"/api/v1/pipelines/{pipeline.pk}/versions/1/files/textnet/model.py",
    ):
        response = client.get(url)
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found.", "errors": {}}


def test_a_version_that_does_not_exist_is_a_404(api_for, author, team_pipeline):
    pipeline, _, _ = team_pipeline
    assert api_for(author).get(f"/api/v1/pipelines/{pipeline.pk}/versions/9/files/").status_code == 404
