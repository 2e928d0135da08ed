"""Run pages without a worker: the generated form, its validation, the run page, its partials."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from web_pagecheck import scan

from mlopen.datasets.models import Dataset
from mlopen.datasets.services import store_dataset
from mlopen.pipelines.models import Runtime
from mlopen.runs.models import Run, RunMetric

pytestmark = pytest.mark.django_db

SPEC_RUN = [
    {"name": "title", "type": "string", "default": "hello"},
    {"name": "k", "type": "integer", "default": 5},
    {"name": "alpha", "type": "float", "default": 0.5},
    {"name": "limit", "type": "integer", "blank": True},
    {"name": "verbose", "type": "bool", "default": True},
    {"name": "method", "type": "choice", "choices": ["fast", "exact"], "default": "fast"},
    {"name": "threshold", "type": "float"},
    {"name": "lookup", "type": "file", "blank": True},
    {"name": "extra", "type": "upload", "blank": True},
]
SPEC_TRAIN = [{"name": "epochs", "type": "integer", "default": 3}]
RESULT = {
    "columns": ["name", "score"],
    "data": [["b", 2], ["a", 3], ["c", 1]],
    "graphs": [
        {"kind": "figure", "figure": {"data": [{"type": "bar", "x": ["a"], "y": [3]}], "layout": {}}},
        {"kind": "html", "html": '<div id="g">graph</div><script>document.title="x"</script>'},
    ],
    "text": (
        '<b>Accuracy</b> 0.9<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>'
    ),
}


@pytest.fixture
def pipeline(make_pipeline):
    return make_pipeline("scorer", params_run=SPEC_RUN, params_train=SPEC_TRAIN)


def dataset_of(owner, name="data.csv"):
    return store_dataset(owner=owner, name=name, filename=name, chunks=[b"a,b\n1,2\n"])


def form_data(for_pipeline, **values):
    data = {
        "pipeline": for_pipeline.pk,
        "kind": "run",
        "input": "",
        "params.title": "hello",
        "params.k": "5",
        "params.alpha": "0.5",
        "params.limit": "",
        "params.verbose": "on",
        "params.method": "fast",
        "params.threshold": "0.25",
        "params.lookup": "",
    }
    data.update(values)
    return {k: v for k, v in data.items() if v is not None}


def tag_of(page: str, name: str) -> str:
    at = page.index(f'name="{name}"')
    return page[page.rindex("<", 0, at) : page.index(">", at) + 1]


# --- the form --------------------------------------------------------------------------------------


def test_run_form_has_a_field_for_every_parameter_type_with_defaults(alice_client, user, outsider, pipeline):
    mine = dataset_of(user, "mine.csv")
    dataset_of(outsider, "theirs.csv")  # must not be offered
    page = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&kind=run").content.decode()
    assert 'type="text"' in tag_of(page, "params.title") and 'value="hello"' in tag_of(page, "params.title")
    assert 'type="number"' in tag_of(page, "params.k") and 'step="1"' in tag_of(page, "params.k")
    assert 'value="5"' in tag_of(page, "params.k")
    assert 'step="any"' in tag_of(page, "params.alpha") and 'value="0.5"' in tag_of(page, "params.alpha")
    assert "required" not in tag_of(page, "params.limit")
    assert 'type="checkbox"' in tag_of(page, "params.verbose") and "checked" in tag_of(page, "params.verbose")
    assert tag_of(page, "params.method").startswith("<select")
    assert '<option value="fast" selected>fast</option>' in page
    assert "required" in tag_of(page, "params.threshold")
    assert tag_of(page, "params.lookup").startswith("<select")
    assert f'<option value="{mine.pk}">mine.csv' in page and "theirs.csv" not in page
    assert 'type="file"' in tag_of(page, "params.extra")
    assert 'value="run" class="btn-check" id="id_kind_1" required checked' in page


def test_run_form_preselects_the_dataset_from_the_query_string(alice_client, user, pipeline):
    dataset = dataset_of(user)
    page = alice_client.get(f"/runs/new/?pipeline={pipeline.pk}&input={dataset.pk}").content.decode()
    assert f'<option value="{dataset.pk}" selected>data.csv' in page


def test_run_form_without_pipeline_asks_to_choose_one(alice_client, pipeline):
    page = alice_client.get("/runs/new/").content.decode()
    assert "Choose a pipeline to see its parameters" in page
    assert 'hx-get="/runs/new/params/"' in page and 'hx-trigger="change"' in page


def test_params_partial_follows_pipeline_and_kind(alice_client, pipeline):
    response = alice_client.get(f"/runs/new/params/?pipeline={pipeline.pk}&kind=train", HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert 'name="params.epochs"' in page and 'value="3"' in page
    assert 'name="params.k"' not in page
    assert "<html" not in page
    assert response["HX-Replace-Url"] == f"/runs/new/?pipeline={pipeline.pk}&kind=train"


def test_invalid_values_are_shown_inline_and_nothing_is_started(alice_client, pipeline):
    response = alice_client.post("/runs/new/", form_data(pipeline, **{"params.k": "2.5", "params.threshold": ""}))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert errors["params.k"] == ["Enter a whole number (got '2.5')."]
    assert errors["params.threshold"] == ["This parameter is required."]
    page = response.content.decode()
    assert "Enter a whole number (got &#x27;2.5&#x27;)." in page
    assert "is-invalid" in tag_of(page, "params.k")
    assert not Run.objects.exists()


def test_unknown_pipeline_is_an_error_on_the_pipeline_field(alice_client, pipeline):
    response = alice_client.post("/runs/new/", form_data(pipeline, pipeline="9999"))
    assert response.status_code == 400
    assert "pipeline" in response.context["form"].errors


def test_other_users_dataset_cannot_be_the_input(alice_client, outsider, pipeline):
    theirs = dataset_of(outsider)
    response = alice_client.post("/runs/new/", form_data(pipeline, input=str(theirs.pk)))
    assert response.status_code == 400
    assert "input" in response.context["form"].errors
    assert not Run.objects.exists()


def test_valid_form_starts_a_run_and_opens_its_page(alice_client, user, pipeline):
    dataset = dataset_of(user)
    response = alice_client.post(
        "/runs/new/",
        form_data(
            pipeline,
            input=str(dataset.pk),
            **{"params.verbose": None, "params.k": "7", "params.lookup": str(dataset.pk)},
        ),
    )
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert (run.status, run.kind, run.input, run.owner) == ("queued", "run", dataset, user)
    assert run.params == {
        "title": "hello",
        "k": 7,
        "alpha": 0.5,
        "limit": None,
        "verbose": False,
        "method": "fast",
        "threshold": 0.25,
        "lookup": dataset.pk,
        "extra": None,
    }


def test_files_uploaded_with_the_form_become_the_users_datasets(alice_client, user, pipeline):
    response = alice_client.post(
        "/runs/new/",
        form_data(
            pipeline,
            input_upload=SimpleUploadedFile("in.csv", b"x\n1\n"),
            **{"params.extra": SimpleUploadedFile("more.txt", b"hi")},
        ),
    )
    run = Run.objects.get()
    assert response.status_code == 302
    assert run.input.name == "in.csv" and run.input.owner == user
    assert Dataset.objects.get(pk=run.params["extra"]).filename == "more.txt"


def test_uploaded_files_are_not_kept_when_the_run_is_refused(alice_client, pipeline):
    response = alice_client.post(
        "/runs/new/", form_data(pipeline, input_upload=SimpleUploadedFile("in.csv", b"x\n"), **{"params.k": "many"})
    )
    assert response.status_code == 400
    assert "choose them again" in response.content.decode()
    assert not Dataset.objects.exists() and not Run.objects.exists()


def test_train_form_takes_the_training_parameters(alice_client, pipeline):
    response = alice_client.post("/runs/new/", {"pipeline": pipeline.pk, "kind": "train", "params.epochs": "9"})
    run = Run.objects.get()
    assert response.status_code == 302
    assert (run.kind, run.params) == ("train", {"epochs": 9})


# --- the run page ----------------------------------------------------------------------------------


def test_succeeded_run_shows_table_graphs_text_and_downloads(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, result=RESULT, params={"k": 5})
    page = alice_client.get(f"/runs/{run.pk}/").content.decode()
    parsed = scan(page)
    assert "<td>b</td><td>2</td>" in page and "3 rows" in page
    figure = next(s for s in parsed.scripts if s["attrs"].get("id") == "graph-data-0")
    assert figure["attrs"]["type"] == "application/json"
    assert json.loads(figure["body"]) == RESULT["graphs"][0]["figure"]
    assert 'data-figure="graph-data-0"' in page
    assert parsed.iframes == [
        {
            "class": "graph-frame",
            "id": "graph-1",
            "title": "Graph 2",
            "sandbox": "allow-scripts",
            "src": f"/runs/{run.pk}/graphs/1/",
        }
    ]
    assert "/static/vendor/plotly/plotly.min.js" in page
    assert f"/api/v1/runs/{run.pk}/download/?format=csv" in page
    assert "Finished in 1 min 15 s" in page


def test_run_text_is_sanitized_but_keeps_formatting(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, result=RESULT)
    page = alice_client.get(f"/runs/{run.pk}/").content.decode()
    text = page[page.index('id="run-text"') :]
    text = text[: text.index("</div>")]
    assert "<b>Accuracy</b> 0.9" in text
    assert "<script" not in text and "alert" not in text and "onerror" not in text and "javascript:" not in text


def test_plain_text_result_keeps_its_line_breaks(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, result={"text": "line one\nscore < 3 & more"})
    page = alice_client.get(f"/runs/{run.pk}/").content.decode()
    assert "<p>line one<br>score &lt; 3 &amp; more</p>" in page


def test_table_partial_sorts_by_column_and_pages(alice_client, user, pipeline, make_run, settings):
    settings.MLOPEN_RESULT_PAGE_SIZE = 2
    run = make_run(user, pipeline, result=RESULT)
    first = alice_client.get(f"/runs/{run.pk}/table/?sort=1&order=desc", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in first
    assert first.index("<td>a</td><td>3</td>") < first.index("<td>b</td><td>2</td>")
    assert "<td>c</td>" not in first and 'name="page" min="1" max="2" value="1"' in first
    assert 'aria-sort="descending"' in first
    assert f'hx-get="/runs/{run.pk}/table/?sort=1&amp;order=asc"' in first  # clicking again flips the order
    second = alice_client.get(f"/runs/{run.pk}/table/?page=2&sort=1&order=desc").content.decode()
    assert "<td>c</td><td>1</td>" in second and "<td>a</td>" not in second
    assert f'hx-get="/runs/{run.pk}/table/?page=1&amp;sort=1&amp;order=desc"' in second  # paging keeps the sort
    assert f'hx-replace-url="/runs/{run.pk}/?page=1&amp;sort=1&amp;order=desc"' in second
    past_the_end = alice_client.get(f"/runs/{run.pk}/table/?page=9").content.decode()
    assert 'name="page" min="1" max="2" value="2"' in past_the_end


def _rows(count):
    return {"columns": ["n"], "data": [[i] for i in range(count)]}


def test_table_page_size_choice_and_jump_to_page(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, result=_rows(120))
    page = alice_client.get(f"/runs/{run.pk}/").content.decode()
    assert '<option value="50" selected>50</option>' in page and 'max="3"' in page  # the default size, 50
    response = alice_client.get(f"/runs/{run.pk}/table/?page_size=25&page=4&sort=0&order=desc", HTTP_HX_REQUEST="true")
    fragment = response.content.decode()
    # Page 4 of 5 in descending order: rows 44 down to 20; the address bar follows the table.
    assert "<td>44</td>" in fragment and "<td>20</td>" in fragment and "<td>45</td>" not in fragment
    assert "<td>19</td>" not in fragment
    assert '<option value="25" selected>25</option>' in fragment and 'max="5" value="4"' in fragment
    assert response["HX-Replace-Url"] == f"/runs/{run.pk}/?page=4&sort=0&order=desc&page_size=25"
    # Paging and sorting keep the chosen size; a new size starts again at page 1 with the same sort.
    assert f'hx-get="/runs/{run.pk}/table/?page=5&amp;sort=0&amp;order=desc&amp;page_size=25"' in fragment
    assert f'hx-get="/runs/{run.pk}/table/?sort=0&amp;order=asc&amp;page_size=25"' in fragment
    assert '<input type="hidden" name="sort" value="0" data-table-keep>' in fragment
    everything = alice_client.get(f"/runs/{run.pk}/table/?page_size=200").content.decode()
    assert "<td>0</td>" in everything and "<td>119</td>" in everything and 'name="page"' not in everything


def test_table_page_size_outside_the_choices_is_a_400_naming_it(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, result=_rows(30))
    for url in (f"/runs/{run.pk}/table/?page_size=7", f"/runs/{run.pk}/?page_size=abc"):
        response = alice_client.get(url)
        assert response.status_code == 400
        assert response.content.decode() == "page_size must be one of 25, 50, 100, 200."


def test_small_tables_show_no_page_controls(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, result=_rows(20))
    assert 'name="page_size"' not in alice_client.get(f"/runs/{run.pk}/").content.decode()


def test_metric_chart_axis_fits_accuracy_near_one_at_full_width(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, status="succeeded")
    for step, value in enumerate([0.96, 0.99, 1.0], start=1):
        RunMetric.objects.create(run=run, name="accuracy", step=step, value=value)
    page = alice_client.get(f"/runs/{run.pk}/").content.decode()
    figure = json.loads(next(s for s in scan(page).scripts if s["attrs"].get("id") == "metric-data-0")["body"])
    assert figure["layout"]["yaxis"]["range"] == pytest.approx([0.956, 1.0])
    assert '<div class="col-12"><div class="plotly-graph metric-chart" data-figure="metric-data-0">' in page


def test_the_table_search_box_keeps_matching_rows_and_paging_keeps_the_search(
    alice_client, user, pipeline, make_run, settings
):
    settings.MLOPEN_RESULT_PAGE_SIZE = 1
    run = make_run(user, pipeline, result={"columns": ["name", "score"], "data": [["ab", 1], ["b", 2], ["AB", 3]]})
    page = alice_client.get(f"/runs/{run.pk}/table/?search=aB").content.decode()
    assert 'name="search" value="aB"' in page
    assert "<td>ab</td>" in page and "<td>b</td>" not in page and "2 matching rows." in page
    assert f'hx-get="/runs/{run.pk}/table/?page=2&amp;search=aB"' in page
    filtered = alice_client.get(f"/runs/{run.pk}/?filter=score:ge:2&sort=1&order=desc").content.decode()
    assert "<td>AB</td><td>3</td>" in filtered and "2 matching rows." in filtered


def test_a_bad_table_filter_on_the_run_page_is_a_400_saying_why_with_the_whole_table(
    alice_client, user, pipeline, make_run
):
    run = make_run(user, pipeline, result=RESULT)
    for path in (f"/runs/{run.pk}/", f"/runs/{run.pk}/table/"):
        response = alice_client.get(path + "?filter=nope:eq:1")
        assert response.status_code == 400
        page = response.content.decode()
        assert "The table has no column &#x27;nope&#x27;" in page and "The whole table is shown." in page
        assert "<td>c</td><td>1</td>" in page
    unknown_op = alice_client.get(f"/runs/{run.pk}/table/?filter=score:like:1")
    assert unknown_op.status_code == 400 and "Unknown operator" in unknown_op.content.decode()


def test_html_graph_frame_is_sandboxed_with_its_own_policy(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, result=RESULT)
    response = alice_client.get(f"/runs/{run.pk}/graphs/1/")
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == (
        "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' http://testserver/static/; "
        "style-src 'unsafe-inline'; img-src data:"
    )
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    page = response.content.decode()
    assert '<script src="http://testserver/static/vendor/plotly/plotly.min.js"></script>' in page
    assert '<div id="g">graph</div><script>document.title="x"</script>' in page
    assert alice_client.get(f"/runs/{run.pk}/graphs/0/").status_code == 404  # a figure, drawn in the page
    assert alice_client.get(f"/runs/{run.pk}/graphs/2/").status_code == 404


def test_a_forged_host_header_never_reaches_the_graph_frame(alice_client, user, pipeline, make_run, settings):
    settings.MLOPEN_BASE_URL = "https://ml.example.org"
    run = make_run(user, pipeline, result=RESULT)
    response = alice_client.get(f"/runs/{run.pk}/graphs/1/", HTTP_HOST="evil.example")
    assert response.status_code == 200
    assert "evil.example" not in response["Content-Security-Policy"]
    assert "script-src 'unsafe-inline' https://ml.example.org/static/;" in response["Content-Security-Policy"]
    assert "evil.example" not in response.content.decode()
    assert '<script src="https://ml.example.org/static/vendor/plotly/plotly.min.js">' in response.content.decode()


def test_failed_run_shows_the_error_in_plain_words_and_the_log(alice_client, user, pipeline, make_run):
    run = make_run(
        user,
        pipeline,
        status="failed",
        error="ValueError: the column 'price' is missing",
        log="loading\nTraceback ...\n",
    )
    page = alice_client.get(f"/runs/{run.pk}/").content.decode()
    assert page.index('id="run-error"') < page.index('id="run-status"')
    assert "This run failed" in page and "ValueError: the column &#x27;price&#x27; is missing" in page
    assert "loading\nTraceback ...\n</pre>" in page
    # The log is open (no <details>) and at full width, right under the status.
    output = page[page.index('id="run-output"') - 200 : page.index('id="run-output"')]
    assert "col-lg" not in output and "<details" not in output
    assert "Run again" in page and "Cancel</button>" not in page


def test_running_run_status_panel_polls_and_shows_progress_and_log(alice_client, user, pipeline, make_run):
    run = make_run(
        user,
        pipeline,
        status="running",
        log="epoch 1\nepoch 2\n",
        progress_fraction=0.4,
        progress_message="epoch 2 of 5",
    )
    RunMetric.objects.create(run=run, name="loss", step=1, value=0.9)
    RunMetric.objects.create(run=run, name="loss", step=2, value=0.7)
    response = alice_client.get(f"/runs/{run.pk}/status/", HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert "HX-Refresh" not in response
    assert f'hx-get="/runs/{run.pk}/status/" hx-trigger="every 1s" hx-swap="outerHTML"' in page
    assert 'style="width: 40%"' in page and "epoch 2 of 5" in page
    assert "epoch 1\nepoch 2\n</pre>" in page and "data-autoscroll" in page
    assert "Cancel</button>" in page
    metric = next(s for s in scan(page).scripts if s["attrs"].get("id") == "metric-data-0")
    assert json.loads(metric["body"])["data"][0] | {} == {
        "type": "scatter",
        "mode": "lines+markers",
        "name": "loss",
        "x": [1, 2],
        "y": [0.9, 0.7],
    }


def test_finished_run_status_stops_polling_and_reloads_the_page(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, status="succeeded")
    response = alice_client.get(f"/runs/{run.pk}/status/", HTTP_HX_REQUEST="true")
    assert response["HX-Refresh"] == "true"
    assert "hx-trigger" not in response.content.decode()
    assert "Run again" in response.content.decode()


def test_queued_run_says_when_no_worker_is_running(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, status="queued")
    page = alice_client.get(f"/runs/{run.pk}/").content.decode()
    assert "Waiting for a worker" in page and "No worker is running right now" in page


def test_queued_run_whose_runtime_is_building_shows_the_builds_progress(alice_client, user, pipeline, make_run):
    runtime = Runtime.objects.create(
        name="datascience",
        digest="d" * 64,
        lock="",
        build_status="building",
        progress_fraction=0.4,
        progress_message="installed 10 of 27 packages",
    )
    pipeline.versions.update(runtime=runtime)
    run = make_run(user, pipeline, status="queued")

    status = alice_client.get(f"/runs/{run.pk}/status/", HTTP_HX_REQUEST="true").content.decode()

    assert "Waiting for runtime <code>datascience</code> (building, 40%)" in status
    assert "installed 10 of 27 packages" in status and 'id="run-waiting-runtime"' in status


def test_finished_run_lists_its_packages_and_links_them_as_a_requirements_file(alice_client, user, pipeline, make_run):
    environment = {"runtime": "datascience", "digest": "d" * 64, "python": "3.11.7", "packages": {"pandas": "2.3.3"}}
    run = make_run(user, pipeline, status="succeeded", environment=environment)

    page = alice_client.get(f"/runs/{run.pk}/").content.decode()
    download = alice_client.get(f"/api/v1/runs/{run.pk}/requirements.txt/")

    assert '<details class="card shadow-sm mb-4" id="run-environment">' in page
    assert "Python 3.11.7, runtime <code>datascience</code>, 1 packages" in page
    assert "<li>pandas==2.3.3</li>" in page and f'href="/api/v1/runs/{run.pk}/requirements.txt/"' in page
    assert download.status_code == 200
    assert download.content.decode() == "# Python 3.11.7, runtime datascience (lock dddddddddddddddd)\npandas==2.3.3\n"


def test_cancel_a_queued_run(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, status="queued")
    response = alice_client.post(f"/runs/{run.pk}/cancel/", follow=True)
    run.refresh_from_db()
    assert run.status == "cancelled"
    page = response.content.decode()
    assert page.count("Cancelled before it started.") == 1
    assert "The run is cancelled." not in page  # one message per event


def test_queued_run_shows_its_position_in_its_queue(alice_client, user, pipeline, make_run):
    first = make_run(user, pipeline, status="queued", queue="default")
    make_run(user, pipeline, status="queued", queue="gpu")  # another queue: not ahead of it
    make_run(user, pipeline, status="running", queue="default")  # taken: not ahead of it
    second = make_run(user, pipeline, status="queued", queue="default")
    assert "It is next in the queue." in alice_client.get(f"/runs/{first.pk}/").content.decode()
    page = alice_client.get(f"/runs/{second.pk}/status/").content.decode()
    assert "Number 2 in the queue (1 ahead of it)." in page


def test_cancel_a_finished_run_says_why_not(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, status="succeeded")
    response = alice_client.post(f"/runs/{run.pk}/cancel/", follow=True)
    assert "only queued or running runs can be cancelled" in response.content.decode()


def test_run_again_starts_a_new_run_with_the_same_settings(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, status="failed", params={"threshold": 0.3})
    response = alice_client.post(f"/runs/{run.pk}/rerun/")
    new = Run.objects.exclude(pk=run.pk).get()
    assert response["Location"] == f"/runs/{new.pk}/"
    assert (new.status, new.retry_of, new.params["threshold"]) == ("queued", run, 0.3)


def test_cancel_and_rerun_need_post(alice_client, user, pipeline, make_run):
    run = make_run(user, pipeline, status="queued")
    assert alice_client.get(f"/runs/{run.pk}/cancel/").status_code == 405
    assert alice_client.get(f"/runs/{run.pk}/rerun/").status_code == 405


@pytest.mark.parametrize("suffix", ["", "status/", "table/", "graphs/1/"])
def test_other_users_run_is_404(client_for, outsider, user, pipeline, make_run, suffix):
    run = make_run(user, pipeline, result=RESULT)
    assert client_for(outsider).get(f"/runs/{run.pk}/{suffix}").status_code == 404


@pytest.mark.parametrize("action", ["cancel", "rerun"])
def test_other_users_run_cannot_be_cancelled_or_repeated(client_for, outsider, user, pipeline, make_run, action):
    run = make_run(user, pipeline, status="queued")
    assert client_for(outsider).post(f"/runs/{run.pk}/{action}/").status_code == 404
    assert Run.objects.get().status == "queued"


def test_admin_sees_every_users_run(client_for, admin_user, user, pipeline, make_run):
    run = make_run(user, pipeline, result=RESULT)
    assert client_for(admin_user).get(f"/runs/{run.pk}/").status_code == 200


# --- history ---------------------------------------------------------------------------------------


def test_run_history_filters_by_pipeline_kind_and_status(
    alice_client, user, outsider, pipeline, make_pipeline, make_run
):
    other = make_pipeline("other")
    shown = make_run(user, pipeline, status="failed", kind="train")
    make_run(user, pipeline, status="succeeded", kind="train")
    make_run(user, other, status="failed", kind="train")
    make_run(outsider, pipeline, status="failed", kind="train")
    page = alice_client.get(f"/runs/?pipeline={pipeline.pk}&kind=train&status=failed").content.decode()
    rows = [line.strip() for line in page.splitlines() if 'class="fw-medium run-name" href="/runs/' in line]
    assert rows == [f'<a class="fw-medium run-name" href="/runs/{shown.pk}/">{pipeline.name} #{shown.pk}</a>']
    assert "1 min 15 s" in page
    assert alice_client.get("/runs/?status=queued").content.decode().count("No runs match these filters") == 1


def test_run_history_is_paged_with_a_fixed_number_of_queries(
    alice_client, user, pipeline, make_run, django_assert_num_queries
):
    for _ in range(3):
        make_run(user, pipeline)
    # session, user, count, page, the page's tags, the pipelines, the tags to choose from, and the
    # live ETag (count, page) and the browser-notification choices
    with django_assert_num_queries(10) as few:
        alice_client.get("/runs/")
    for _ in range(30):
        make_run(user, pipeline)
    with django_assert_num_queries(len(few.captured_queries)):
        page = alice_client.get("/runs/?page=2").content.decode()
    assert "26–33 of 33" in page


def test_run_history_empty_state_points_to_new_run(alice_client):
    page = alice_client.get("/runs/").content.decode()
    assert "No runs yet" in page and "Start your first run" in page


# --- fair use -----------------------------------------------------------------------------------------


def test_past_the_queued_limit_the_form_answers_429_naming_the_limit_and_keeps_what_was_queued(
    alice_client, user, pipeline, settings
):
    settings.MLOPEN_USER_MAX_QUEUED = 1
    dataset = dataset_of(user)
    assert alice_client.post("/runs/new/", form_data(pipeline, input=str(dataset.pk))).status_code == 302
    response = alice_client.post("/runs/new/", form_data(pipeline, input=str(dataset.pk)))
    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    page = response.content.decode()
    assert "You have 1 run waiting" in page and "MLOPEN_USER_MAX_QUEUED" in page
    assert Run.objects.filter(owner=user, status="queued").count() == 1


def test_the_home_page_shows_ones_runs_against_ones_limits(alice_client, user, pipeline):
    from mlopen.runs.models import RunLimits

    RunLimits.objects.create(user=user, max_running=2, max_queued=0)
    alice_client.post("/runs/new/", form_data(pipeline, input=str(dataset_of(user).pk)))
    page = alice_client.get("/").content.decode()
    assert "Yours: 0 running of 2, 1 queued</div>" in page
