"""Path traversal (the MLflow CVE-2023-1177 class and its bypasses).

A dataset, support file or pipeline name like ../../x.py, %2e%2e/x, ..\\x, /abs/x or one with a
NUL byte never writes or reads outside its own folder (a support file's path with one is refused
outright); download and graph URLs built from such names answer 404. Multipart bodies are built by
hand here: Django's test client would strip the directories from a file name before the server
ever saw them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlopen.core import storage
from mlopen.datasets.models import Dataset
from mlopen.pipelines.models import PipelineVersion

pytestmark = pytest.mark.django_db

HOSTILE_NAMES = {
    "../../escape.py": "escape.py",
    "/etc/cron.d/escape.py": "escape.py",
    "..\\..\\escape.py": "escape.py",
    "%2e%2e%2fescape.py": "2e_2e_2fescape.py",
    "..%2f..%2fescape.py": "2f.._2fescape.py",
    "esc\x00ape.py": "escape.py",
    "..／..／escape.py": "escape.py",  # a fullwidth solidus, which NFKC turns into "/"
    "C:\\Windows\\escape.py": "escape.py",
    "..": "file",
    "...": "file",
    "": "file",
}
CONTROL = (
    b"def train(inpt, params=None):\n    pass\n\n\ndef run_pipeline(input, model, args, params=None):\n    return {}\n"
)


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart body with file names exactly as given (the test client would clean them)."""
    boundary = "mlopen-test-boundary"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for field, filename, content in files:
        header = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(header.encode("utf-8", "surrogateescape") + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def every_file_under(folder: Path) -> set[str]:
    return {os.path.join(d, f) for d, _, files in os.walk(folder) for f in files}


@pytest.fixture
def home_files(settings):
    """Every file under MLOPEN_HOME outside storage, before and after: nothing may appear there.

    Except mlopen's own copy of its runner for pipeline runtimes (envs/sdk-<digest>), made once by
    the first upload whose parameters are read on a runtime."""
    home = Path(settings.MLOPEN_HOME)
    runner_copies = str(home / "envs" / "sdk-")

    def snapshot():
        return {
            p
            for p in every_file_under(home)
            if not p.startswith((str(settings.MLOPEN_STORAGE_DIR), runner_copies))
            and not p.endswith(("-wal", "-shm", "-journal"))
        }

    return snapshot


@pytest.mark.parametrize("raw, safe", HOSTILE_NAMES.items())
def test_safe_filename_keeps_a_name_inside_its_folder(raw, safe):
    assert storage.safe_filename(raw) == safe


@pytest.mark.parametrize("raw", [n for n in HOSTILE_NAMES if n and "\x00" not in n])
def test_a_hostile_dataset_file_name_is_stored_inside_the_owners_folder(api_for, user, raw, settings, home_files):
    before = home_files()
    body, content_type = multipart({"name": raw}, [("file", raw, b"a,b\n1,2\n")])
    response = api_for(user).generic("POST", "/api/v1/datasets/", body, content_type)
    if raw in ("..", "."):  # Django's multipart parser drops such a file before mlopen sees it
        assert response.status_code == 400 and home_files() == before
        return
    assert response.status_code == 201, response.content
    dataset = Dataset.objects.get(pk=response.json()["id"])
    assert "/" not in dataset.filename and "\\" not in dataset.filename and not dataset.filename.startswith(".")
    stored = storage.local_path(dataset.file).resolve()
    assert stored.parent.parent == (settings.MLOPEN_STORAGE_DIR / "datasets" / str(user.pk)).resolve()
    assert stored.read_bytes() == b"a,b\n1,2\n"
    assert home_files() == before
    download = api_for(user).get(f"/api/v1/datasets/{dataset.pk}/download/")
    assert download["Content-Disposition"] == f'attachment; filename="{dataset.filename}"'


def test_a_nul_byte_in_a_dataset_file_name_is_dropped(user):
    from mlopen.datasets.services import store_dataset

    dataset = store_dataset(owner=user, name="x", filename="../a\x00b.csv", chunks=[b"a\n"])
    assert dataset.filename == "ab.csv"


def _stamped(folder: Path) -> set[tuple[str, int]]:
    return {(p, os.stat(p).st_mtime_ns) for p in every_file_under(folder)}


def test_hostile_control_file_names_and_literal_support_names_stay_in_the_versions_folder(
    api_for, author, settings, home_files
):
    before = home_files()
    stored_before = _stamped(settings.MLOPEN_STORAGE_DIR)  # other tests' files stay (only the database is rolled back)
    support = [("support_files", "%2e%2e%2fescape4.py", b"# 4\n"), ("support_files", "sub/ok.py", b"# 5\n")]
    body, content_type = multipart({"name": "traversal"}, [("control", "../../control.py", CONTROL), *support])
    response = api_for(author).generic("POST", "/api/v1/pipelines/", body, content_type)
    assert response.status_code == 201, response.content
    version = PipelineVersion.objects.get(pipeline__name="traversal")
    assert version.control_filename == "control.py"
    assert version.support_files == ["%2e%2e%2fescape4.py", "sub/ok.py"]  # a literal name, never decoded
    folder = storage.local_path(version.folder).resolve()
    written = {Path(p).resolve() for p, _ in _stamped(settings.MLOPEN_STORAGE_DIR) - stored_before}
    assert written == {folder / name for name in ("control.py", *version.support_files)}
    assert home_files() == before


@pytest.mark.parametrize(
    "name", ["../../escape1.py", "/tmp/escape2.py", "..\\..\\escape3.txt", "a/../../escape5.py", "..／escape6.py"]
)
def test_hostile_support_file_paths_are_refused_and_nothing_is_written(api_for, author, settings, home_files, name):
    before = home_files()
    stored_before = _stamped(settings.MLOPEN_STORAGE_DIR)
    body, content_type = multipart({"name": "traversal"}, [("control", "p.py", CONTROL), ("support_files", name, b"x")])
    response = api_for(author).generic("POST", "/api/v1/pipelines/", body, content_type)
    assert response.status_code == 400, response.content
    assert repr(name) in response.json()["errors"]["support_files"]
    assert _stamped(settings.MLOPEN_STORAGE_DIR) == stored_before
    assert home_files() == before
    assert not PipelineVersion.objects.exists()
    assert not Path("/tmp/escape2.py").exists()


@pytest.mark.parametrize(
    "name", ["../x", "/abs/x", "..", "a/../b", "a\\b", "a\x00b", "%2e%2e%2fx", ".hidden", "<script>alert(1)</script>"]
)
def test_hostile_pipeline_names_are_refused(api_for, author, name):
    body, content_type = multipart({"name": name}, [("control", "p.py", CONTROL)])
    response = api_for(author).generic("POST", "/api/v1/pipelines/", body, content_type)
    assert response.status_code == 400
    assert "name" in response.json()["errors"] or "non_field_errors" in response.json()["errors"]


def test_storage_refuses_names_that_leave_it():
    from django.core.exceptions import SuspiciousFileOperation

    refused = (ValueError, SuspiciousFileOperation)
    with pytest.raises(refused):
        storage.write_stream("../../escape.txt", [b"x"])
    with pytest.raises(refused):
        storage.write_stream("/tmp/escape.txt", [b"x"])
    with pytest.raises(refused):
        storage.delete_tree("datasets/../..")
    with pytest.raises(refused):
        storage.open_stored("../secret_key")
    assert not Path("/tmp/escape.txt").exists()


@pytest.mark.parametrize(
    "url",
    [
        "/runs/{run}/graphs/..%2f..%2f..%2fsecret_key/",
        "/runs/{run}/graphs/-1/",
        "/runs/{run}/graphs/99/",
        "/runs/{run}/graphs/0/",  # a figure, not an HTML graph
        "/runs/%2e%2e/graphs/1/",
        "/runs/{run}/..%2f..%2fsecret_key",
        "/api/v1/datasets/..%2f..%2fsecret_key/download/",
        "/api/v1/datasets/%2e%2e%2f%2e%2e%2fsecret_key/download/",
        "/api/v1/datasets/..%5c..%5csecret_key/download/",
        "/api/v1/datasets/{dataset}%00/download/",
        "/api/v1/datasets/{dataset}/download/..%2f..%2f..%2fsecret_key",
        "/api/v1/runs/{run}/download/?format=../../../secret_key",
        "/api/v1/runs/..%2f{run}/result/",
        "/static/..%2f..%2fsecret_key",
        "/static/../../secret_key",
        "/static/%2e%2e/%2e%2e/secret_key",
        "/static/vendor/..%2f..%2f..%2f..%2fsettings.py",
        "/datasets/{dataset}/..%2f..%2f..%2fsecret_key",
    ],
)
def test_traversal_in_download_and_graph_urls_reads_nothing(api_for, user, url, settings, make_result_run):
    run, dataset = make_result_run(user)
    client = api_for(user)
    client.force_login(user)  # the pages use the session, the API the token
    response = client.get(url.format(run=run.pk, dataset=dataset.pk))
    assert response.status_code in (400, 404), (url, response.status_code)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert settings.SECRET_KEY.encode() not in body
    assert b"root:" not in body and b"SECRET_KEY" not in body


@pytest.fixture
def make_result_run():
    from security_fixtures import RESULT, make_pipeline, make_run

    from mlopen.datasets.services import store_dataset

    def make(owner):
        dataset = store_dataset(owner=owner, name="d", filename="d.csv", chunks=[b"a\n1\n"])
        return make_run(owner, make_pipeline("traversal-target"), input=dataset, result=RESULT), dataset

    return make
