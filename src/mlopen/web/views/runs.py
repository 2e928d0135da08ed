from __future__ import annotations

import json
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_POST

from mlopen.core.access import LOGGED_IN, MANAGE, VIEW, access
from mlopen.core.clients import site_url
from mlopen.core.numbers import parse_id, parse_int
from mlopen.datasets import services as dataset_services
from mlopen.datasets.models import Dataset
from mlopen.pipelines import params as params_mod
from mlopen.pipelines import registry, runtimes
from mlopen.pipelines.control import PipelineRejected
from mlopen.pipelines.models import Pipeline, TrainedModel
from mlopen.runs import first_run, lookups, result_queries, results, waiting, workers
from mlopen.runs import logs as run_logs
from mlopen.runs import rules as run_rules
from mlopen.runs import services as run_services
from mlopen.runs.models import Run, RunMetric
from mlopen.web import charts, live
from mlopen.web.forms import PARAM_PREFIX, RunForm
from mlopen.web.sanitize import format_pipeline_text
from mlopen.web.views.run_labels import labels_context
from mlopen.web.views.sharing import apply_share_form, sharing_context

# The live log is re-sent every second while a run is going; beyond this it shows the tail only.
LOG_TAIL_CHARS = 200_000


def _visible_runs(request):
    return Run.objects.visible_to(request.user)


def _get_run(request, pk: int) -> Run:
    # Compiled once (runs.lookups): an open page asks for its status panel every few seconds.
    run = lookups.visible_run_for_page(request.user, pk)
    if run is None:
        raise Http404("No such run, or it is not shared with you.")
    return run


def _get_own_run(request, pk: int) -> Run:
    """For cancelling and sharing: someone else's run is a 404, even one shared with this user."""
    return get_object_or_404(Run.objects.manageable_by(request.user), pk=pk)


# --- starting a run -------------------------------------------------------------------------------


def _choice(request) -> tuple[Pipeline | None, str]:
    """The pipeline and kind the form is for, from the submitted form or the query string."""
    source = request.POST if request.method == "POST" else request.GET
    raw = source.get("pipeline", "")
    pipeline_id = parse_id(raw)
    pipeline = Pipeline.objects.visible_to(request.user).filter(pk=pipeline_id).first() if pipeline_id else None
    kind = source.get("kind") if source.get("kind") in Run.Kind.values else Run.Kind.RUN
    return pipeline, kind


def _form_context(form: RunForm) -> dict:
    pipeline, kind = form.pipeline_obj, form.kind_value
    current_model = registry.default_model(pipeline)[0] if pipeline else None
    chosen = form["model"].value()
    if pipeline is not None and kind == Run.Kind.RUN and chosen:
        try:
            current_model = registry.resolve_model(pipeline, chosen, form.user)[0]
        except PipelineRejected:
            pass  # refused with its reason when the form is sent
    return {
        "form": form,
        "pipeline": pipeline,
        "kind": kind,
        "version": form.version,
        "current_model": current_model,
        "start": first_run.start_state(pipeline, form.version, kind, current_model),
    }


def _initial(request, pipeline: Pipeline | None, kind: str) -> dict:
    """The form's starting values: the input asked for in the link, else the dataset that fits."""
    chosen = request.GET.get("input") or first_run.suggested_input(request.user, pipeline, kind)
    return {
        "pipeline": pipeline,
        "kind": kind,
        "input": chosen or None,
        "version": request.GET.get("version", ""),
        "model": request.GET.get("model", ""),
    }


def _from_run(request) -> Run | None:
    """The run "Run again with changes" starts from (``?from=<id>``), if the user may see it."""
    run_id = parse_id(request.GET.get("from", ""))
    return _visible_runs(request).select_related("pipeline", "version").filter(pk=run_id).first() if run_id else None


def _initial_from(run: Run) -> dict:
    """The form filled from an old run: its pipeline, kind, version, model, input and parameters."""
    return {
        "pipeline": run.pipeline,
        "kind": run.kind,
        "input": run.input_id,
        "version": str(run.version.number),
        "model": run.model_requested
        if run.model_requested and parse_id(run.model_requested) is None
        else (str(run.trained_model_id) if run.trained_model_id and run.kind == Run.Kind.RUN else ""),
        "timeout": run.timeout_seconds,
        **{PARAM_PREFIX + name: value for name, value in (run.params or {}).items()},
    }


# How long starting a run waits for it before showing its page.
LAND_ON_RESULT_SECONDS = 1.0


@access(LOGGED_IN)
def run_new(request):
    pipeline, kind = _choice(request)
    old = None
    if request.method == "POST":
        form = RunForm(request.POST, request.FILES, user=request.user, pipeline=pipeline, kind=kind)
        if form.is_valid():
            run = _submit(request, form)
            if run is not None:
                # A warm run finishes in tens of milliseconds: a moment's wait lands the user on its
                # result instead of a "queued" page that turns into it a second later.
                waiting.wait_until_finished(run.pk, LAND_ON_RESULT_SECONDS)
                return redirect("web:run-detail", pk=run.pk)
        status = 400
    else:
        old = _from_run(request)
        if old is not None:
            pipeline, kind = old.pipeline, old.kind
        initial = _initial_from(old) if old is not None else _initial(request, pipeline, kind)
        form = RunForm(initial=initial, user=request.user, pipeline=pipeline, kind=kind)
        status = 200
    context = _form_context(form)
    if request.method == "GET" and old is not None:
        context["from_run"] = old
    retry_after = getattr(form, "retry_after", None)
    response = render(request, "web/runs/new.html", context, status=429 if retry_after else status)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


@access(LOGGED_IN)
@require_GET
def run_new_check(request):
    """The run form's train → run check: how the chosen input differs from the chosen model's
    training table (re-rendered by htmx when the input or model changes)."""
    pipeline, kind = _choice(request)
    warnings, model, compared = [], None, False
    if pipeline is not None and kind == Run.Kind.RUN:
        warnings, model, compared = run_services.preview_warnings(
            request.user, pipeline, request.GET.get("model", ""), request.GET.get("input", "")
        )
    return render(request, "web/runs/_schema_check.html", {"warnings": warnings, "model": model, "compared": compared})


@access(LOGGED_IN)
@require_GET
def run_new_params(request):
    """The parameter part of the run form, re-rendered by htmx when the pipeline or kind changes."""
    pipeline, kind = _choice(request)
    form = RunForm(initial=_initial(request, pipeline, kind), user=request.user, pipeline=pipeline, kind=kind)
    # The input and Start parts are sent along (out of band): what fits and what is missing depend on the choice.
    response = render(request, "web/runs/_params.html", {**_form_context(form), "oob": True})
    query = f"?pipeline={pipeline.pk}&kind={kind}" if pipeline else f"?kind={kind}"
    response["HX-Replace-Url"] = reverse("web:run-new") + query
    return response


def _store_upload(request, uploaded) -> Dataset:
    return dataset_services.store_dataset(
        owner=request.user,
        name="",
        filename=uploaded.name,
        chunks=uploaded.chunks(),
        size=uploaded.size,
        content_type=getattr(uploaded, "content_type", "") or "",
    )


def _submit(request, form: RunForm) -> Run | None:
    """Keep files uploaded with the form as the user's datasets, then submit the run.

    If the run is refused, those new datasets are removed again: the user fixes the form and
    chooses the files once more (browsers never re-fill file inputs).
    """
    data = form.cleaned_data
    stored: list[Dataset] = []
    try:
        input_ref = data["input"]
        if data.get("input_upload"):
            input_ref = _store_upload(request, data["input_upload"])
            stored.append(input_ref)
        params = form.raw_params()
        for name in form.upload_param_names:
            if data.get(name):
                dataset = _store_upload(request, data[name])
                stored.append(dataset)
                params[name[len(PARAM_PREFIX) :]] = dataset.pk
        run = run_services.submit_run(
            request.user,
            run_services.RunRequest(
                pipeline=data["pipeline"],
                kind=data["kind"],
                input=input_ref,
                params=params,
                timeout_seconds=data.get("timeout"),
                model=data.get("model") or None,
                version=data.get("version") or None,
            ),
        )
    except dataset_services.DatasetRejected as exc:
        form.add_refusal(None, exc.message)
    except run_services.TooManyQueued as exc:
        form.add_refusal(None, exc.message)  # the whole message: the limit, and when to try again
        form.retry_after = exc.retry_after
    except run_services.RunRefused as exc:
        if not exc.errors:
            form.add_refusal(None, exc.message)
        for field, message in exc.errors.items():
            form.add_refusal(field, message)
    else:
        return run
    for dataset in stored:
        dataset_services.delete_dataset(dataset)
    if stored:
        form.add_refusal(None, "The files you chose were not kept because of the problems below; choose them again.")
    return None


# --- one run --------------------------------------------------------------------------------------


def _metric_charts(run: Run) -> list[dict]:
    """One plotly line chart per metric name, x = the logged step (or the order of logging)."""
    series: dict[str, dict] = {}
    for name, step, value in (
        RunMetric.objects.filter(run=run).order_by("name", "step", "id").values_list("name", "step", "value")
    ):
        points = series.setdefault(name, {"x": [], "y": []})
        points["x"].append(step if step is not None else len(points["x"]) + 1)
        points["y"].append(value)
    return [
        {
            "name": name,
            "dom_id": f"metric-data-{n}",
            "figure": {
                "data": [{"type": "scatter", "mode": "lines+markers", "name": name, **points}],
                "layout": {
                    "title": {"text": name},
                    "height": 280,
                    "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
                    "xaxis": {"title": {"text": "step"}},
                    # A range that fits the values (accuracy 0.97-0.99 is not drawn on 0 to 2).
                    "yaxis": {"range": axis} if (axis := charts.value_range(points["y"])) else {},
                },
            },
        }
        for n, (name, points) in enumerate(series.items())
    ]


def _param_rows(run: Run) -> list[dict]:
    """The run's parameters for display; dataset ids of file parameters shown as dataset names."""
    spec = {field["name"]: field for field in run.version.params_for(run.kind)}
    file_ids = [v for k, v in run.params.items() if spec.get(k, {}).get("type") in params_mod.FILE_TYPES and v]
    names = dict(Dataset.objects.filter(pk__in=file_ids).values_list("pk", "name")) if file_ids else {}
    rows = []
    for key, value in run.params.items():
        kind = spec.get(key, {}).get("type", "")
        shown = names.get(value, f"dataset {value} (deleted)") if kind in params_mod.FILE_TYPES and value else value
        rows.append({"name": key, "type": kind, "value": shown})
    return rows


def _status_context(run: Run) -> dict:
    log, cut = run_logs.tail(run.pk, LOG_TAIL_CHARS)
    return {
        "run": run,
        "log": log,
        "log_cut": cut,
        "no_worker": run.status == Run.Status.QUEUED and not workers.live_workers().exists(),
        # A queued run whose runtime is still being built (or failed to build) waits for it.
        "waiting_for": runtimes.waiting_on(run.version) if run.status == Run.Status.QUEUED else None,
        "queue_position": run_services.queue_position(run),
        "metrics": _metric_charts(run),
    }


# The result table's page sizes offered on the page (the API takes any size up to its maximum).
PAGE_SIZES = (25, 50, 100, 200)


class BadTableQuery(ValueError):
    pass


def _table_args(request) -> dict:
    def number(name):
        raw = request.GET.get(name, "")
        return parse_int(raw)

    size = None
    if request.GET.get("page_size", "") != "":
        size = number("page_size")
        if size not in PAGE_SIZES:
            raise BadTableQuery(f"page_size must be one of {', '.join(map(str, PAGE_SIZES))}.")
    return {
        "page": max(1, number("page") or 1),
        "sort": number("sort"),
        "descending": request.GET.get("order") == "desc",
        "size": size,
        "search": request.GET.get("search", "")[:200],
        "filters": tuple(f for f in request.GET.getlist("filter") if f),
    }


def _result_page(
    run: Run,
    page: int = 1,
    sort: int | None = None,
    descending: bool = False,
    size: int | None = None,
    search: str = "",
    filters: tuple[str, ...] = (),
) -> dict | None:
    """One page of the run's result table, with the query strings its header, pager and page-size
    controls use. ``size`` None: the default page size (MLOPEN_RESULT_PAGE_SIZE), left out of links.
    A filter that cannot be used shows the whole table with why (``query_problem``; the view answers 400)."""
    source = results.source_of(run)
    if source is None:
        return None
    chosen_size = size
    size = size or settings.MLOPEN_RESULT_PAGE_SIZE
    kept = {"page_size": chosen_size} if chosen_size else {}
    # A part of the stored result that cannot be read comes back as a message in result["problems"].
    expect_table = run.result_rows is not None

    def read(number: int) -> dict:
        return results.page_of(
            source, number, size, sort, descending, expect_table=expect_table, filters=filters, search=search
        )

    query_problem = None
    try:
        result = read(page)
    except result_queries.QueryInvalid as exc:
        query_problem, filters, search, page = exc.message, (), "", 1
        result = read(page)
    if result["rows"] is not None and page > result["pages"]:
        result = read(result["pages"])
    order = "desc" if descending else "asc"
    narrowing = [*(("filter", f) for f in filters), *((("search", search),) if search else ())]
    result["query_problem"] = query_problem
    result["search"] = search
    result["filters"] = filters
    result["headers"] = [
        {
            "name": name,
            "sorted": order if index == sort else None,
            # A click sorts ascending, a second click on the same column flips the order.
            "query": "?"
            + urlencode(
                [
                    ("sort", index),
                    ("order", "desc" if index == sort and not descending else "asc"),
                    *narrowing,
                    *kept.items(),
                ]
            ),
        }
        for index, name in enumerate(result["columns"] or [])
    ]

    sorting = {"sort": sort, "order": order} if sort is not None else {}

    def page_query(number):
        return "?" + urlencode([("page", number), *sorting.items(), *narrowing, *kept.items()])

    result["prev_query"] = page_query(result["page"] - 1) if result["page"] > 1 else None
    result["next_query"] = page_query(result["page"] + 1) if result["page"] < result["pages"] else None
    result["query"] = page_query(result["page"])
    result["sorting"] = sorting
    result["size_choices"] = [{"size": n, "selected": n == size} for n in PAGE_SIZES]
    # The size choice shows once a smaller page than the table exists.
    result["size_control"] = (result["rows"] or 0) > PAGE_SIZES[0]
    return result


def _table_status(result: dict | None) -> int:
    return 400 if result and result.get("query_problem") else 200


def _may_rerun(user, run: Run) -> bool:
    """A colleague may repeat a shared run as their own only when they can see its input too."""
    return run.input_id is None or Dataset.objects.visible_to(user).filter(pk=run.input_id).exists()


def _images(run: Run, result: dict | None) -> list[dict]:
    """The result's images for the thumbnail grid and its lightbox; each downloads from the API's URL."""
    if not result:
        return []
    return [
        {"index": index, "name": entry["name"], "url": reverse("run-image", args=[run.pk, index])}
        if entry is not None
        else {"index": index, "message": result["problems"][f"images.{index}"]}
        for index, entry in enumerate(result["images"])
    ]


@access(VIEW)
def run_detail(request, pk: int):
    run = _get_run(request, pk)
    manageable = run_rules.can_manage(request.user, run)
    try:
        result = _result_page(run, **_table_args(request))
    except BadTableQuery as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain")
    graphs = []
    if result:
        graphs = [
            {"index": i, "kind": g.get("kind"), "figure": g.get("figure"), "dom_id": f"graph-data-{i}"}
            if g is not None
            else {"index": i, "kind": "unreadable", "message": result["problems"][f"graphs.{i}"]}
            for i, g in enumerate(result["graphs"])
        ]
    produced = TrainedModel.objects.filter(run=run).first() if run.kind == Run.Kind.TRAIN else None
    context = {
        **_status_context(run),
        "params": _param_rows(run),
        "result": result,
        "graphs": graphs,
        "images": _images(run, result),
        "text_html": format_pipeline_text(result.get("text")) if result else "",
        "produced_model": produced,
        "produced_is_current": produced is not None and registry.default_model(run.pipeline)[0] == produced,
        "manageable": manageable,
        "may_rerun": manageable or _may_rerun(request.user, run),
        "input_visible": run.input_id is not None
        and (manageable or Dataset.objects.visible_to(request.user).filter(pk=run.input_id).exists()),
        "sharing": sharing_context(request, run, manageable),
        **labels_context(request, run),
    }
    return render(request, "web/runs/detail.html", context, status=_table_status(result))


@access(VIEW)
@require_GET
def run_status(request, pk: int):
    """The live status panel. htmx polls it while the run is going; once finished the page reloads
    (HX-Refresh) to show the results, and the panel it returns carries no polling trigger."""
    run = _get_run(request, pk)
    manageable = run_rules.can_manage(request.user, run)
    response = render(
        request,
        "web/runs/_status.html",
        {**_status_context(run), "manageable": manageable, "may_rerun": manageable or _may_rerun(request.user, run)},
    )
    if run.is_finished and request.headers.get("HX-Request"):
        response["HX-Refresh"] = "true"
        # Before the reload: the page tells its user the run ended (tab title, browser notification).
        live.mark_for_notifications(request.user, [run])
        finished = {
            "id": run.pk,
            "status": run.status,
            "notify": run.notify,
            "label": run.display_name,  # as every list labels it
        }
        response["HX-Trigger"] = json.dumps({"mlopen:run-finished": finished})
    return response


@access(VIEW)
@require_GET
def run_table(request, pk: int):
    run = _get_run(request, pk)
    try:
        result = _result_page(run, **_table_args(request))
    except BadTableQuery as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain")
    if result is None:
        raise Http404("This run has no result table.")
    response = render(request, "web/runs/_table.html", {"run": run, "result": result}, status=_table_status(result))
    # The page-size and jump-to-page form asks for this fragment; the address bar shows the page.
    response["HX-Replace-Url"] = reverse("web:run-detail", args=[run.pk]) + result["query"]
    return response


@access(MANAGE)
@require_POST
def run_cancel(request, pk: int):
    run = _get_own_run(request, pk)
    try:
        run = run_services.cancel_run(run)
    except run_services.RunRefused as exc:
        messages.warning(request, exc.message)
    else:
        # A run cancelled before it started says so on its own page ("Cancelled before it started."):
        # no second message for the same event.
        if run.status != Run.Status.CANCELLED:
            messages.info(request, "Cancelling: the worker stops the pipeline within a second.")
    return redirect("web:run-detail", pk=run.pk)


@access(VIEW)
@require_POST
def run_rerun(request, pk: int):
    run = _get_run(request, pk)
    try:
        new = run_services.rerun(request.user, run)
    except run_services.RunRefused as exc:
        messages.error(request, f"This run cannot be started again: {exc.message}")
        return redirect("web:run-detail", pk=run.pk)
    messages.success(request, f"Started run {new.pk}, a repeat of run {run.pk}.")
    waiting.wait_until_finished(new.pk, LAND_ON_RESULT_SECONDS)
    return redirect("web:run-detail", pk=new.pk)


# What an HTML graph (a pipeline's own markup and script) may do inside its sandboxed frame: run
# inline script and our static plotly.js, nothing else: no network, no same-origin access to us.
_FRAME_CSP = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' {static}; "
    "style-src 'unsafe-inline'; img-src data:"
)


@access(VIEW)
@require_GET
@xframe_options_sameorigin
def graph_frame(request, pk: int, index: int):
    run = _get_run(request, pk)
    source = results.source_of(run)
    if source is None:
        raise Http404("This run has no graphs.")
    graph = results.graph_at(source, index)
    if graph is None or graph.get("kind") != "html":
        raise Http404("No such HTML graph.")
    # The sandboxed frame has no origin of its own, so its CSP names ours: from MLOPEN_BASE_URL,
    # never from the Host header a client sent.
    static_origin = site_url(settings.STATIC_URL)
    body = render_to_string(
        "web/runs/graph_frame.html",
        # The hashed name, as on the run page: the browser has it cached already.
        {
            "graph_html": graph.get("html") or "",
            "plotly_src": site_url(static("vendor/plotly/plotly.min.js")),
        },
    )
    response = HttpResponse(body)
    response["Content-Security-Policy"] = _FRAME_CSP.format(static=static_origin)
    return response


@access(MANAGE)
@require_POST
def run_share(request, pk: int):
    run = _get_own_run(request, pk)
    apply_share_form(request, run, "run")
    return redirect("web:run-detail", pk=run.pk)
