"""Every malformed request gets a 4xx that says what was wrong, in the one error shape, never a 500."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def raw(api, make_run):
    """Send raw bytes and check the answer is a JSON 4xx; return (status, body).

    "{run}" and "{pipeline}" in the path (and "{pipeline}" in the body) stand for a succeeded run
    of the admin's and its pipeline.
    """
    run = make_run(api.user)

    def send(method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        path = path.replace("{run}", str(run.pk)).replace("{pipeline}", str(run.pipeline_id))
        kwargs = {}
        if body is not None:
            body = body.replace(b"{pipeline}", str(run.pipeline_id).encode())
            kwargs = {"data": body, "content_type": content_type or "application/json"}
        response = getattr(api, method)(path, **kwargs)
        assert 400 <= response.status_code < 500, (method, path, response.status_code, response.content[:300])
        assert response["Content-Type"] == "application/json", response["Content-Type"]
        return response.status_code, response.json()

    return send


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("?pipeline=abc", 400, "pipeline"),
        ("?pipeline=99999999999999999999999", 400, "pipeline"),
        ("?status=bogus", 400, "status"),
        ("?status=queued,bogus", 400, "status"),
        ("?kind=bogus", 400, "kind"),
        ("?page=0", 400, "page"),
        ("?page=-3", 400, "page"),
        ("?page=x", 400, "page"),
        ("?page=1.5", 400, "page"),
        ("?page=99", 404, None),
        ("?page=99999999999999999999999999", 400, "page"),  # past the 63-bit range: not a page number
        ("?page_size=0", 400, "page_size"),
        ("?page_size=x", 400, "page_size"),
        ("?page_size=99999999999999999999", 400, "page_size"),
        ("?user=" + "u" * 400, 400, "user"),
        ("?pipeline=a%00b", 400, "pipeline"),
        ("?user=a%00b", 400, "user"),
    ],
)
def test_bad_run_list_queries(raw, query, status, field):
    code, body = raw("get", f"/api/v1/runs/{query}")
    assert code == status
    assert body["detail"]
    if field:
        assert field in body["errors"]
        assert body["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/pipelines/?page=0",
        "/api/v1/datasets/?page_size=-1",
        "/api/v1/pipelines/{pipeline}/versions/?page=x",
        "/api/v1/pipelines/{pipeline}/models/?page_size=100000",
    ],
)
def test_every_list_checks_its_page_parameters(raw, path):
    code, body = raw("get", path)
    assert code == 400
    assert set(body["errors"]) & {"page", "page_size"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"pipeline": 1,', None),  # bad JSON
        (b"\xff\xfe not utf-8", None),
        (b"[1, 2, 3]", "non_field_errors"),  # a JSON array
        (b'"a string"', "non_field_errors"),
        (b"null", "non_field_errors"),
        (b"{}", "pipeline"),
        (b'{"pipeline": "no-such-pipeline"}', "pipeline"),
        (b'{"pipeline": {"id": 1}}', "pipeline"),
        (b'{"pipeline": 99999999999999999999999}', "pipeline"),
        (b'{"pipeline": true}', "pipeline"),
        (b'{"pipeline": "{pipeline}", "kind": "bake"}', "kind"),
        (b'{"pipeline": "{pipeline}", "params": [1, 2]}', "params"),
        (b'{"pipeline": "{pipeline}", "params": "k=5"}', "params"),
        (b'{"pipeline": "{pipeline}", "input": "a string"}', "input"),
        (b'{"pipeline": "{pipeline}", "input": 987654}', "input"),
        (b'{"pipeline": "{pipeline}", "input": 99999999999999999999999}', "input"),
        (b'{"pipeline": "{pipeline}", "timeout": 0}', "timeout"),
        (b'{"pipeline": "{pipeline}", "timeout": "soon"}', "timeout"),
        (b'{"pipeline": "{pipeline}", "params": {"nope": 1}}', "params.nope"),
        (b'{"pipeline": "a\\u0000b"}', "pipeline"),
        (b'{"pipeline": "{pipeline}", "params": {"k": "a\\u0000b"}}', "params"),
        (b'{"pipeline": [1]}', "pipeline"),
        (b'{"pipeline": 1.5}', "pipeline"),
    ],
)
def test_bad_run_create_bodies(raw, body, field):
    code, answer = raw("post", "/api/v1/runs/", body)
    assert code == 400
    assert answer["detail"]
    if field:
        assert field in answer["errors"], answer


def test_run_create_with_a_text_body_is_415(raw):
    code, body = raw("post", "/api/v1/runs/", b"pipeline=1", content_type="text/plain")
    assert code == 415
    assert body == {"detail": 'Unsupported media type "text/plain" in request.', "errors": {}}


@pytest.mark.parametrize("path", ["/api/v1/datasets/", "/api/v1/pipelines/", "/api/v1/pipelines/{pipeline}/versions/"])
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\x00\x01garbage\r\n--", "multipart/form-data; boundary=xyz"),
        (b"--xyz\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--xyz--\r\n", "multipart/form-data; boundary=xyz"),
        (b"whatever", "multipart/form-data"),  # no boundary
        (b"whatever", "multipart/form-data; boundary="),
        (b'{"file": "not a file"}', "application/json"),
    ],
)
def test_garbage_uploads(raw, path, body, content_type):
    code, answer = raw("post", path, body, content_type=content_type)
    assert code == 400
    assert answer["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/runs/987654/",
        "/api/v1/runs/abc/",
        "/api/v1/runs/99999999999999999999999/",
        "/api/v1/runs/987654/logs/",
        "/api/v1/runs/987654/result/",
        "/api/v1/runs/987654/download/",
        "/api/v1/pipelines/987654/",
        "/api/v1/pipelines/987654/versions/",
        "/api/v1/pipelines/x/models/",
        "/api/v1/datasets/987654/",
        "/api/v1/datasets/987654/download/",
        "/api/v1/datasets/987654/preview/",
        "/api/v1/no-such-thing/",
        "/api/v1/runs/1.5/",
        "/api/v1/runs/{run}/nonsense/",
    ],
)
def test_unknown_ids_and_paths_are_json_404s(raw, path):
    code, body = raw("get", path)
    assert code == 404
    assert set(body) == {"detail", "errors"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/runs/987654/cancel/"),
        ("post", "/api/v1/runs/987654/rerun/"),
        ("delete", "/api/v1/datasets/987654/"),
    ],
)
def test_unknown_ids_in_actions_are_404(raw, method, path):
    assert raw(method, path)[0] == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?page=0", "page"),
        ("?page=abc", "page"),
        ("?page_size=0", "page_size"),
        ("?page_size=5000", "page_size"),
        ("?sort=x", "sort"),
        ("?sort=-1", "sort"),
        ("?sort=7", "sort"),
        ("?order=sideways", "order"),
    ],
)
def test_bad_result_page_queries(raw, query, field):
    code, body = raw("get", f"/api/v1/runs/{{run}}/result/{query}")
    assert code == 400
    assert field in body["errors"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/runs/{run}/download/?format=xml", "format"),
        ("/api/v1/runs/{run}/logs/?offset=-1", "offset"),
        ("/api/v1/runs/{run}/logs/?offset=ten", "offset"),
    ],
)
def test_bad_download_and_log_parameters(raw, path, field):
    code, body = raw("get", path)
    assert code == 400
    assert field in body["errors"]


def test_body_over_the_memory_limit_is_413(raw, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    code, body = raw("post", "/api/v1/runs/", b'{"pipeline": "' + b"x" * 2000 + b'"}')
    assert code == 413
    assert body["detail"].startswith("The request body is too large")


def test_unknown_format_is_a_404_that_says_so(raw):
    code, body = raw("get", "/api/v1/runs/?format=xml")
    assert code == 404
    assert body["detail"] == "There is no 'xml' format here; leave out ?format= to get JSON."


def test_pipeline_name_filter_refuses_nul(raw):
    code, body = raw("get", "/api/v1/pipelines/?name=a%00b")
    assert code == 400
    assert "name" in body["errors"]


def test_wrong_method_is_405(raw):
    code, body = raw("put", "/api/v1/runs/{run}/")  # PATCH changes a run's labels; PUT nothing
    assert code == 405
    assert body == {"detail": 'Method "PUT" not allowed.', "errors": {}}


def test_missing_trailing_slash_redirects_keeping_the_method(api):
    response = api.post("/api/v1/runs", {}, format="json")
    assert response.status_code == 308
    assert response["Location"] == "/api/v1/runs/"
