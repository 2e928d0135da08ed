"""Stored XSS from rendered outputs (MLflow GHSA-3v79-q7ph-j75h, JupyterLab HTML outputs).

Hostile markup in every place a pipeline or a user can put text (run text, table cells, column
names, figures, logs, errors, parameters, metric names, dataset names and contents, zip entry
names, pipeline descriptions and file names, group names) never becomes markup in our pages:
pipeline text keeps its formatting through nh3, everything else is escaped, figures travel as
escaped JSON, HTML graphs run only in a sandboxed frame under their own CSP.
"""

from __future__ import annotations

import io
import zipfile

import pytest
from security_fixtures import make_pipeline, make_run
from security_pages import dangerous_markup

from mlopen.datasets.services import store_dataset
from mlopen.runs.models import RunMetric

pytestmark = pytest.mark.django_db

PAYLOADS = [
    '<script>alert("xss-1")</script>',
    '<img src=x onerror=alert("xss-2")>',
    "<a href=\"javascript:alert('xss-3')\">xss-3</a>",
    '<svg onload=alert("xss-4")><script>alert("xss-4b")</script></svg>',
    '"><iframe src="javascript:alert(\'xss-5\')"></iframe>',
    '<form action="https://evil.example/xss-6"><input name=p><button>go</button></form>',
    "<a href=\" JaVaScRiPt:alert('xss-7')\">xss-7</a>",
    "<math><mi xlink:href=\"javascript:alert('xss-8')\">xss-8</mi></math>",
    '<img src="data:text/html;base64,PHNjcmlwdD5hbGVydCgneHNzLTknKTwvc2NyaXB0Pg==">',
    "</script><script>alert('xss-10')</script>",
    '<div onclick="alert(\'xss-11\')" style="background:url(javascript:alert(1))">xss-11</div>',
    '<base href="https://evil.example/xss-12/">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example/xss-13">',
    '<div hx-get="/api/v1/me/?xss-14" hx-trigger="load">xss-14</div>',
    '<object data="javascript:alert(\'xss-15\')"></object><embed src="javascript:alert(16)">',
    '<template><script>alert("xss-17")</script></template>',
    '<noscript><p title="</noscript><img src=x onerror=alert(18)>">',
]
HOSTILE = " ".join(PAYLOADS)
SHORT = '<img src=x onerror=alert("xss-m")>'  # for fields of 100 characters
ESCAPED = "&lt;script&gt;alert(&quot;xss-1&quot;)&lt;/script&gt;"


@pytest.fixture
def hostile(db, user):
    """alice's pipeline, datasets and runs, hostile in every field a pipeline or a user can fill."""
    from django.contrib.auth.models import Group

    team = Group.objects.create(name='"><img src=x onerror=alert("xss-g")>')
    team.user_set.add(user)
    pipeline = make_pipeline(
        "hostile",
        created_by=user,
        params_run=[
            {"name": "note", "type": "string", "default": HOSTILE},
            {"name": "mode", "type": "choice", "choices": [SHORT, "plain"], "default": "plain"},
        ],
    )
    pipeline.description = HOSTILE
    pipeline.save()
    version = pipeline.latest_version
    version.support_files = [SHORT]
    version.save()
    csv = f'"{HOSTILE}",b\n"{SHORT}",2\n'.encode()
    dataset = store_dataset(owner=user, name=HOSTILE[:200], filename="table.csv", chunks=[csv])
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(SHORT + ".txt", "x")
        zf.writestr('../"><script>alert("xss-z")</script>', "x")
    zip_dataset = store_dataset(owner=user, name="archive", filename="archive.zip", chunks=[archive.getvalue()])
    result = {
        "columns": [HOSTILE, SHORT],
        "data": [[HOSTILE, SHORT], ["=1+1", "@SUM(A1)"]],
        "text": "<b>kept-bold</b> <i>kept-italic</i> <table><tr><td>kept-cell</td></tr></table> " + HOSTILE,
        "graphs": [
            {
                "kind": "figure",
                "figure": {
                    "data": [{"type": "bar", "x": [HOSTILE], "y": [1], "name": HOSTILE, "hovertemplate": HOSTILE}],
                    "layout": {"title": {"text": HOSTILE}},
                },
            },
            {
                "kind": "html",
                "html": f"<div id='g'>graph</div><script>parent.document.title='xss-frame'</script>{HOSTILE}",
            },
        ],
    }
    run = make_run(
        user,
        pipeline,
        input=dataset,
        input_name=HOSTILE[:200],
        params={"note": HOSTILE, "mode": SHORT},
        result=result,
        log=HOSTILE,
        progress_message=HOSTILE[:500],
    )
    RunMetric.objects.create(run=run, name=SHORT, step=1, value=0.5)
    failed = make_run(user, pipeline, status="failed", error=HOSTILE, log=HOSTILE)
    running = make_run(
        user, pipeline, status="running", log=HOSTILE, progress_message=HOSTILE[:500], progress_fraction=0.5
    )
    return {
        "pipeline": pipeline,
        "dataset": dataset,
        "zip": zip_dataset,
        "run": run,
        "failed": failed,
        "running": running,
    }


PAGES = {
    "home": lambda h: "/",
    "pipeline list": lambda h: "/pipelines/",
    "pipeline page": lambda h: f"/pipelines/{h['pipeline'].pk}/",
    "dataset list": lambda h: "/datasets/",
    "dataset page (csv preview)": lambda h: f"/datasets/{h['dataset'].pk}/",
    "dataset page (zip listing)": lambda h: f"/datasets/{h['zip'].pk}/",
    "dataset delete page": lambda h: f"/datasets/{h['dataset'].pk}/delete/",
    "run list": lambda h: "/runs/",
    "run page": lambda h: f"/runs/{h['run'].pk}/",
    "run table": lambda h: f"/runs/{h['run'].pk}/table/?sort=0",
    "failed run page": lambda h: f"/runs/{h['failed'].pk}/",
    "running run page": lambda h: f"/runs/{h['running'].pk}/",
    "running run status": lambda h: f"/runs/{h['running'].pk}/status/",
    "run form": lambda h: f"/runs/new/?pipeline={h['pipeline'].pk}&input={h['dataset'].pk}",
    "run form parameters": lambda h: f"/runs/new/params/?pipeline={h['pipeline'].pk}",
    "not found page": lambda h: '/runs/"><script>alert("xss-404")</script>/',
}


@pytest.mark.parametrize("page", PAGES)
def test_hostile_text_is_never_markup_on_a_page(client, user, hostile, page):
    client.force_login(user)
    response = client.get(PAGES[page](hostile))
    assert response.status_code == (404 if page == "not found page" else 200)
    html = response.content.decode()
    assert dangerous_markup(html) == []
    if page != "not found page":
        assert "xss-" in html  # the hostile text is on the page, as text


def test_pipeline_text_keeps_its_formatting_and_loses_everything_that_runs(client, user, hostile):
    client.force_login(user)
    html = client.get(f"/runs/{hostile['run'].pk}/").content.decode()
    text = html[html.index('id="run-text"') : html.index("</div>", html.index('id="run-text"'))]
    assert "<b>kept-bold</b>" in text and "<i>kept-italic</i>" in text and "<td>kept-cell</td>" in text
    for banned in (
        "<script",
        "onerror",
        "javascript:",
        "<iframe",
        "<form",
        "<svg",
        "<math",
        "hx-get",
        "<base",
        "<meta",
        "<object",
        "<embed",
        "onclick",
        "data:text/html",
    ):
        assert banned not in text.lower(), banned


def test_table_cells_and_column_names_are_escaped(client, user, hostile):
    client.force_login(user)
    html = client.get(f"/runs/{hostile['run'].pk}/table/").content.decode()
    assert html.count(ESCAPED) == 2  # the column name and the cell
    assert "&lt;img src=x onerror=alert(&quot;xss-m&quot;)&gt;" in html


def test_figures_reach_the_page_as_escaped_json(client, user, hostile):
    client.force_login(user)
    html = client.get(f"/runs/{hostile['run'].pk}/").content.decode()
    start = html.index('id="graph-data-0"')
    block = html[start : html.index("</script>", start)]
    assert "<" not in block.split(">", 1)[1] and "\\u003Cscript\\u003E" in block


def test_an_html_graph_runs_only_in_a_sandboxed_frame_with_its_own_policy(client, user, hostile):
    client.force_login(user)
    page = client.get(f"/runs/{hostile['run'].pk}/").content.decode()
    assert f'sandbox="allow-scripts"\n                    src="/runs/{hostile["run"].pk}/graphs/1/"' in page
    assert "allow-same-origin" not in page
    frame = client.get(f"/runs/{hostile['run'].pk}/graphs/1/")
    policy = frame["Content-Security-Policy"]
    assert policy.startswith("sandbox allow-scripts;") and "allow-same-origin" not in policy
    assert "default-src 'none'" in policy and "connect-src" not in policy  # no fetch/XHR anywhere
    assert frame["X-Frame-Options"] == "SAMEORIGIN"


def test_every_page_forbids_inline_script_by_policy(client, user, hostile):
    client.force_login(user)
    policy = client.get(f"/runs/{hostile['run'].pk}/")["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'self'"
    assert directives["base-uri"] == "'self'" and directives["form-action"] == "'self'"


def test_csv_downloads_neutralize_cells_that_spreadsheets_would_run(api_for, user, hostile):
    response = api_for(user).get(f"/api/v1/runs/{hostile['run'].pk}/download/?format=csv")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert response["Content-Disposition"] == f'attachment; filename="run-{hostile["run"].pk}.csv"'
    assert lines[2] == "'=1+1,'@SUM(A1)"


def test_hostile_names_in_upload_messages_are_escaped(client, user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(user)
    response = client.post(
        "/datasets/upload/", {"file": SimpleUploadedFile("a.csv", b"a\n"), "name": HOSTILE[:200]}, follow=True
    )
    html = response.content.decode()
    assert "is uploaded" in html and dangerous_markup(html) == []


def test_api_answers_are_json_that_browsers_will_not_sniff_as_html(api_for, user, hostile):
    response = api_for(user).get(f"/api/v1/runs/{hostile['run'].pk}/")
    assert response["Content-Type"] == "application/json"
    assert response["X-Content-Type-Options"] == "nosniff"
    logs = api_for(user).get(f"/api/v1/runs/{hostile['run'].pk}/logs/")
    assert logs["Content-Type"] == "text/plain; charset=utf-8" and logs["X-Content-Type-Options"] == "nosniff"
    download = api_for(user).get(f"/api/v1/datasets/{hostile['dataset'].pk}/download/")
    assert download["Content-Type"] == "application/octet-stream"
    assert download["Content-Disposition"].startswith("attachment")
