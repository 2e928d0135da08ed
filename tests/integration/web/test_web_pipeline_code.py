"""Support folders on the pages: the upload form's folder picker and zip, and a version's code
(tree, highlighted source, download, diff between versions), for whoever may run the pipeline."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.contrib.auth.models import Group

from mlopen.pipelines.models import Pipeline

pytestmark = pytest.mark.django_db

CONTROL = b"""from textnet.model import WIDTH


def train(inpt, params=None):
    pass


def run_pipeline(input, model, args, params=None):
    return {"text": str(WIDTH)}
"""


@pytest.fixture
def post_upload(client_for, author, multipart_body):
    def post(files: list[tuple[str, str, bytes]], name: str = "textnet"):
        body, content_type = multipart_body(
            {"name": name, "description": ""}, [("control", "control.py", CONTROL), *files]
        )
        return client_for(author).generic("POST", "/pipelines/upload/", body, content_type)

    return post


def test_a_picked_folder_is_uploaded_with_its_subfolders_and_without_hidden_files(post_upload):
    response = post_upload(
        [
            ("support_folder", "textnet/__init__.py", b""),
            ("support_folder", "textnet/model.py", b"WIDTH = 3\n"),
            ("support_folder", "textnet/data/words.txt", b"a\n"),
            ("support_folder", "textnet/.git/config", b"[core]\n"),
            ("support_folder", "textnet/__pycache__/model.cpython-311.pyc", b"\0"),
        ]
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    version = Pipeline.objects.get(name="textnet").latest_version
    assert version.support_files == ["textnet/__init__.py", "textnet/model.py", "textnet/data/words.txt"]


def test_a_zip_is_unpacked_with_its_folders(post_upload):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("textnet/__init__.py", b"")
        archive.writestr("textnet/model.py", b"WIDTH = 3\n")
        archive.writestr("nltk_data/corpora/words.txt", b"a\n")
    response = post_upload([("support_zip", "support.zip", buffer.getvalue())])
    assert response.status_code == 302, response.content.decode()[:2000]
    version = Pipeline.objects.get(name="textnet").latest_version
    assert sorted(version.support_files) == ["nltk_data/corpora/words.txt", "textnet/__init__.py", "textnet/model.py"]


@pytest.mark.parametrize(
    ("files", "field", "message"),
    [
        ([("support_files", "../escape.py", b"x")], "support_files", "The support file '../escape.py' has '..'"),
        ([("support_folder", "/etc/x/model.py", b"x")], "support_folder", "has an absolute path"),
        ([("support_zip", "support.zip", b"not a zip")], "support_zip", "support.zip is not a zip file"),
        (
            [("support_files", "textnet/model.py", b"1"), ("support_folder", "textnet/model.py", b"2")],
            "support_folder",
            "Two files are named 'textnet/model.py'",
        ),
    ],
)
def test_a_bad_support_path_is_shown_next_to_its_field_and_nothing_is_stored(post_upload, files, field, message):
    response = post_upload(files)
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert any(message in error for error in errors[field]), errors
    assert message.replace("'", "&#x27;") in response.content.decode()
    assert not Pipeline.objects.exists()


@pytest.fixture
def versions(api_for, author, multipart_body, django_user_model):
    """Two versions of ada's pipeline, private to "team" (with carol); mallory is outside it."""
    client = api_for(author)

    def publish(url, fields, files):
        body, content_type = multipart_body(fields, files)
        response = client.generic("POST", url, body, content_type)
        assert response.status_code == 201, response.content
        return response.json()

    first = publish(
        "/api/v1/pipelines/",
        {"name": "textnet"},
        [
            ("control", "control.py", CONTROL),
            ("support_files", "textnet/__init__.py", b""),
            ("support_files", "textnet/model.py", b"WIDTH = 3\n"),
            ("support_files", "textnet/weights.bin", bytes(range(256))),
            ("support_files", "old.txt", b"gone\n"),
        ],
    )
    publish(
        f"/api/v1/pipelines/{first['id']}/versions/",
        {},
        [
            ("control", "control.py", CONTROL),
            ("support_files", "textnet/__init__.py", b""),
            ("support_files", "textnet/model.py", b"WIDTH = 5\n"),
            ("support_files", "textnet/weights.bin", bytes(range(256))),
            ("support_files", "new.txt", b"fresh\n"),
        ],
    )
    pipeline = Pipeline.objects.get(pk=first["id"])
    team = Group.objects.create(name="team")
    carol = django_user_model.objects.create_user(username="carol", password=None)
    mallory = django_user_model.objects.create_user(username="mallory", password=None)
    team.user_set.add(author, carol)
    pipeline.private_group = team
    pipeline.save()
    return pipeline, carol, mallory


def test_the_code_page_shows_the_tree_and_the_control_files_highlighted_source(client_for, author, versions):
    pipeline, carol, _ = versions
    for person in (author, carol):
        response = client_for(person).get(f"/pipelines/{pipeline.pk}/versions/1/files/")
        assert response.status_code == 200
        page = response.content.decode()
        tree = page[page.index('id="file-tree"') : page.index("</ul>", page.index('id="file-tree"'))]
        assert tree.index("control.py") < tree.index("old.txt") < tree.index("textnet/") < tree.index("model.py")
        assert f'href="/pipelines/{pipeline.pk}/versions/1/files/textnet/model.py"' in page
        assert '<span class="kn">from</span>' in page  # highlighted by Pygments
        assert 'id="source-path">control.py<' in page


def test_a_support_file_in_a_subfolder_shows_its_source(client_for, author, versions):
    pipeline, _, _ = versions
    page = client_for(author).get(f"/pipelines/{pipeline.pk}/versions/2/files/textnet/model.py").content.decode()
    assert 'id="source-path">textnet/model.py<' in page
    assert '<span class="n">WIDTH</span>' in page and '<span class="mi">5</span>' in page


def test_a_binary_file_shows_its_size_and_a_download_link(client_for, author, versions):
    pipeline, _, _ = versions
    client = client_for(author)
    page = client.get(f"/pipelines/{pipeline.pk}/versions/1/files/textnet/weights.bin").content.decode()
    assert "A binary file (256\xa0bytes)" in page
    download = f"/pipelines/{pipeline.pk}/versions/1/download/textnet/weights.bin"
    assert f'href="{download}"' in page
    response = client.get(download)
    assert response["Content-Disposition"] == 'attachment; filename="weights.bin"'
    assert b"".join(response.streaming_content) == bytes(range(256))


def test_the_diff_between_two_versions_shows_what_changed(client_for, author, versions):
    pipeline, carol, _ = versions
    response = client_for(carol).get(f"/pipelines/{pipeline.pk}/compare/")  # by default: latest vs the one before
    assert response.status_code == 200
    changes = {change.path: change for change in response.context["changes"]}
    assert {path: change.status for path, change in changes.items()} == {
        "control.py": "same",
        "new.txt": "added",
        "old.txt": "removed",
        "textnet/__init__.py": "same",
        "textnet/model.py": "changed",
        "textnet/weights.bin": "same",
    }
    assert changes["textnet/model.py"].lines == [("hunk", "@@ -1 +1 @@"), ("del", "-WIDTH = 3"), ("add", "+WIDTH = 5")]
    page = response.content.decode()
    assert "3 files changed, 3 unchanged." in page
    assert '<span class="diff-add">+WIDTH = 5</span>' in page


def test_the_pipeline_page_links_each_versions_files_and_its_changes(client_for, author, versions):
    pipeline, _, _ = versions
    page = client_for(author).get(f"/pipelines/{pipeline.pk}/").content.decode()
    assert f'href="/pipelines/{pipeline.pk}/versions/2/files/textnet/model.py"' in page
    assert f'href="/pipelines/{pipeline.pk}/versions/1/files/"' in page
    assert f'href="/pipelines/{pipeline.pk}/compare/?to=2"' in page


@pytest.mark.parametrize(
    "url",
    [
        "/pipelines/{pk}/versions/1/files/",
        "/pipelines/{pk}/versions/1/files/textnet/model.py",
        "/pipelines/{pk}/versions/1/download/textnet/model.py",
        "/pipelines/{pk}/compare/",
    ],
)
def test_an_outsider_gets_404_for_a_pipelines_code(client_for, versions, url):
    pipeline, _, mallory = versions
    assert client_for(mallory).get(url.format(pk=pipeline.pk)).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/pipelines/{pk}/versions/1/files/new.txt",  # only in version 2
        "/pipelines/{pk}/versions/1/files/../../../etc/passwd",
        "/pipelines/{pk}/versions/1/download/textnet",
        "/pipelines/{pk}/versions/7/files/",
        "/pipelines/{pk}/compare/?from=1&to=7",
    ],
)
def test_a_file_or_version_that_is_not_there_is_a_404(client_for, author, versions, url):
    pipeline, _, _ = versions
    assert client_for(author).get(url.format(pk=pipeline.pk)).status_code == 404
