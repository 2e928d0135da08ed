"""The OpenAPI 3 schema and the browsable docs, served from local assets under our CSP."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("/api/v1/me/", "get"),
    ("/api/v1/pipelines/", "get"),
    ("/api/v1/pipelines/", "post"),
    ("/api/v1/pipelines/{id}/", "get"),
    ("/api/v1/pipelines/{id}/", "patch"),
    ("/api/v1/pipelines/{id}/versions/", "get"),
    ("/api/v1/pipelines/{id}/versions/", "post"),
    ("/api/v1/pipelines/{id}/models/", "get"),
    ("/api/v1/datasets/", "get"),
    ("/api/v1/datasets/", "post"),
    ("/api/v1/datasets/{id}/", "get"),
    ("/api/v1/datasets/{id}/", "delete"),
    ("/api/v1/datasets/{id}/download/", "get"),
    ("/api/v1/datasets/{id}/preview/", "get"),
    ("/api/v1/runs/", "get"),
    ("/api/v1/runs/", "post"),
    ("/api/v1/runs/{id}/", "get"),
    ("/api/v1/runs/{id}/logs/", "get"),
    ("/api/v1/runs/{id}/result/", "get"),
    ("/api/v1/runs/{id}/download/", "get"),
    ("/api/v1/runs/{id}/cancel/", "post"),
    ("/api/v1/runs/{id}/rerun/", "post"),
    ("/api/v1/datasets/{id}/share/", "get"),
    ("/api/v1/datasets/{id}/share/", "post"),
    ("/api/v1/datasets/{id}/share/", "patch"),
    ("/api/v1/runs/{id}/share/", "get"),
    ("/api/v1/runs/{id}/share/", "post"),
    ("/api/v1/runs/{id}/share/", "patch"),
    ("/api/v1/webhooks/", "get"),
    ("/api/v1/webhooks/", "post"),
    ("/api/v1/webhooks/{id}/", "get"),
    ("/api/v1/webhooks/{id}/", "delete"),
    ("/api/v1/webhooks/{id}/deliveries/", "get"),
}


def test_schema_is_openapi_3_json_with_every_resource_operation(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    found = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert found >= OPERATIONS, OPERATIONS - found
    assert all(path.startswith("/api/v1/") for path, _ in found)


def test_every_operation_documents_the_error_body(client):
    schema = client.get("/api/schema/?format=json").json()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for code in ("400", "401", "404"):
                body = operation["responses"][code]["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/Error"}, (path, method, code)
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail", "errors"]


def test_created_runs_link_to_what_can_be_done_with_them(client):
    schema = client.get("/api/schema/?format=json").json()
    links = schema["paths"]["/api/v1/runs/"]["post"]["responses"]["201"]["links"]
    assert links["GetRunLogs"] == {"operationId": "runs_logs_retrieve", "parameters": {"id": "$response.body#/id"}}
    assert set(links) == {"GetRun", "GetRunLogs", "GetRunResult", "DownloadRunResult", "CancelRun", "RerunRun"}


def test_run_list_filters_are_documented(client):
    schema = client.get("/api/schema/?format=json").json()
    names = {p["name"] for p in schema["paths"]["/api/v1/runs/"]["get"]["parameters"]}
    assert names == {
        *("q", "tag", "pipeline", "version", "kind", "status", "user", "created_after", "created_before"),
        *("ordering", "columns", "cursor", "page", "page_size"),
    }


def test_docs_page_has_no_inline_script_and_uses_local_assets(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts, html
    for attributes, body in scripts:
        assert 'src="' in attributes and not body.strip(), "inline script would be blocked by script-src 'self'"
        assert "//" not in attributes.split('src="')[1].split('"')[0][:2], "asset from another host"
    assert "script-src 'self'" in response["Content-Security-Policy"]
    for src in re.findall(r'src="([^"]+)"', html) + re.findall(r'href="([^"]+\.css)"', html):
        asset = client.get(src.replace("&amp;", "&"))
        assert asset.status_code == 200, src
        if "script" in src:
            assert asset["Content-Type"].startswith("application/javascript")
            assert b"SwaggerUIBundle" in asset.content
