from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, OuterRef, Subquery
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from mlopen.core.access import AUTHOR, LOGGED_IN, VIEW, access
from mlopen.core.roles import can_upload_pipelines
from mlopen.core.sharing import SharingRefused
from mlopen.pipelines import params as params_mod
from mlopen.pipelines import registry, rules
from mlopen.pipelines.maintainers import parse_usernames, set_maintainers
from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen.pipelines.services import (
    IncomingFile,
    PipelineForbidden,
    PipelineRejected,
    PipelineUnchanged,
    UploadRequest,
    set_input_required,
    upload_pipeline,
)
from mlopen.pipelines.visibility import set_private_group
from mlopen.runs import first_run, retention
from mlopen.runs.models import Run
from mlopen.web.forms import PipelineFirstRunForm, PipelineMaintainersForm, PipelineUploadForm, PipelineVisibilityForm
from mlopen.web.views import live as live_views


@access(LOGGED_IN)
def pipeline_list(request):
    pipelines = (
        Pipeline.objects.visible_to(request.user)
        .select_related("private_group")
        .annotate(
            version_count=Count("versions", distinct=True),
            latest_number=Max("versions__number"),
            model_count=Count("trained_models", distinct=True),
            saves_model=Subquery(
                PipelineVersion.objects.filter(pipeline=OuterRef("pk")).order_by("-number").values("saves_model")[:1]
            ),
        )
        .order_by("name")
    )
    return render(
        request, "web/pipelines/list.html", {"pipelines": pipelines, "can_upload": can_upload_pipelines(request.user)}
    )


def _param_rows(spec: list[dict]) -> list[dict]:
    return [{**field, "required": params_mod.is_required(field)} for field in spec]


@access(VIEW)
def pipeline_detail(request, pk: int):
    """The pipeline's page; its owner (or an admin) posts the maintainers form to it."""
    pipeline = get_object_or_404(
        Pipeline.objects.visible_to(request.user).select_related("private_group", "created_by"), pk=pk
    )
    if request.method == "POST":
        return _change_maintainers(request, pipeline)
    versions = list(pipeline.versions.select_related("created_by").order_by("-number"))
    latest = versions[0] if versions else None
    models = list(
        pipeline.trained_models.select_related("run", "version").prefetch_related("aliases").order_by("-number")
    )
    current = registry.default_model(pipeline)[0]
    visible_runs = set(
        Run.objects.visible_to(request.user)
        .filter(pk__in=[model.run_id for model in models if model.run_id])
        .values_list("pk", flat=True)
    )
    for model in models:
        model.run_visible = model.run_id in visible_runs
    manageable = rules.can_manage(request.user, pipeline)
    examples = first_run.examples_of(request.user, pipeline)
    maintainers = list(pipeline.maintainers.order_by("username"))
    recent_runs = live_views.recent_runs_of(request, pipeline)
    days_kept, own_retention = retention.days_kept(pipeline)
    return render(
        request,
        "web/pipelines/detail.html",
        {
            "pipeline": pipeline,
            "versions": versions,
            "latest": latest,
            "train_params": _param_rows(latest.params_train) if latest else [],
            "run_params": _param_rows(latest.params_run) if latest else [],
            "models": models,
            "current_model": current,
            "model_need": first_run.model_need(latest, Run.Kind.RUN, models[0] if models else None),
            "examples": examples,
            "first_run_form": PipelineFirstRunForm(
                user=request.user,
                initial={
                    "input_required": pipeline.input_required,
                    **{f"{kind}_example": example.pk for kind, example in examples.items()},
                },
            )
            if manageable
            else None,
            "show_saved_as": any(model.label or model.model_names or model.arg_names for model in models),
            "recent_runs": recent_runs,
            "live_etag": live_views.pipeline_etag(request, pipeline),
            "can_publish": manageable,
            "can_manage": manageable,
            "days_kept": days_kept,
            "own_retention": own_retention,
            "maintainers": maintainers,
            "maintainers_form": PipelineMaintainersForm(
                initial={"maintainers": ", ".join(person.get_username() for person in maintainers)}
            )
            if rules.can_name_maintainers(request.user, pipeline)
            else None,
            "visibility_form": PipelineVisibilityForm(user=request.user, initial={"group": pipeline.private_group_id})
            if manageable
            else None,
        },
    )


@access(AUTHOR)
def pipeline_upload(request):
    form = PipelineUploadForm(
        request.POST or None, request.FILES or None, initial={"name": request.GET.get("name", "")}
    )
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        upload = UploadRequest(
            control=IncomingFile.from_uploaded(data["control"]),
            support_files=[IncomingFile.from_uploaded(f) for f in data["support_files"]],
            name=data["name"],
            description=data["description"],
            requirements=IncomingFile.from_uploaded(data["requirements"]) if data["requirements"] else None,
            support_folder=[IncomingFile.from_uploaded(f) for f in data["support_folder"]],
            support_zip=IncomingFile.from_uploaded(data["support_zip"]) if data["support_zip"] else None,
            runtime=data["runtime"],
        )
        try:
            version = upload_pipeline(upload, request.user)
        except PipelineUnchanged as exc:
            messages.info(request, exc.message)
            return redirect("web:pipeline-detail", pk=exc.version.pipeline_id)
        except PipelineForbidden as exc:
            form.add_refusal(exc.field, exc.message)
            return render(request, "web/pipelines/upload.html", {"form": form}, status=403)
        except PipelineRejected as exc:
            form.add_refusal(exc.field, exc.message)
            status = exc.status
        else:
            messages.success(request, f"{version.pipeline.name} version {version.number} is uploaded and ready.")
            return redirect("web:pipeline-detail", pk=version.pipeline_id)
    if form.errors and status == 200:
        status = 400
    return render(request, "web/pipelines/upload.html", {"form": form}, status=status)


def _change_maintainers(request, pipeline: Pipeline):
    if not rules.can_name_maintainers(request.user, pipeline):
        raise PermissionDenied(rules.maintainers_refusal(pipeline))
    form = PipelineMaintainersForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Maintainers were not changed: the list is too long.")
        return redirect(f"{reverse('web:pipeline-detail', args=[pipeline.pk])}#maintainers")
    try:
        set_maintainers(pipeline, request.user, parse_usernames(form.cleaned_data["maintainers"]))
    except PipelineRejected as exc:
        messages.error(request, f"Maintainers were not changed. {exc.message}")
    else:
        names = ", ".join(person.get_username() for person in pipeline.maintainers.order_by("username"))
        messages.success(
            request,
            f"{pipeline.name} is now maintained by its owner and {names}."
            if names
            else f"{pipeline.name} has no maintainers now: only its owner and admins publish versions.",
        )
    return redirect(f"{reverse('web:pipeline-detail', args=[pipeline.pk])}#maintainers")


@access(AUTHOR)
@require_POST
def pipeline_visibility(request, pk: int):
    """Its owner, a maintainer or an admin makes a pipeline private to one of their groups, or public again."""
    pipeline = get_object_or_404(Pipeline.objects.visible_to(request.user), pk=pk)
    if not rules.can_manage(request.user, pipeline):
        raise PermissionDenied(rules.manage_refusal(pipeline))
    form = PipelineVisibilityForm(request.POST, user=request.user)
    if not form.is_valid():
        messages.error(request, "Visibility was not changed: choose one of your groups.")
        return redirect("web:pipeline-detail", pk=pipeline.pk)
    group = form.cleaned_data["group"]
    try:
        set_private_group(pipeline, request.user, group.pk if group else None)
    except SharingRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"{pipeline.name} is now visible only to the group “{group.name}” (and admins)."
            if group
            else f"{pipeline.name} is now visible to everyone who can log in.",
        )
    return redirect("web:pipeline-detail", pk=pipeline.pk)


@access(AUTHOR)
@require_POST
def pipeline_first_run(request, pk: int):
    """Its owner, a maintainer or an admin says whether its runs need an input, and sets its examples."""
    pipeline = get_object_or_404(Pipeline.objects.visible_to(request.user), pk=pk)
    if not rules.can_manage(request.user, pipeline):
        raise PermissionDenied(rules.manage_refusal(pipeline))
    form = PipelineFirstRunForm(request.POST, user=request.user)
    if not form.is_valid():
        messages.error(request, "Nothing was changed: choose datasets from the lists.")
        return redirect(f"{reverse('web:pipeline-detail', args=[pipeline.pk])}#first-run")
    set_input_required(request.user, pipeline, form.cleaned_data["input_required"])
    for kind in Run.Kind.values:
        example = form.cleaned_data[f"{kind}_example"]
        first_run.set_example(request.user, pipeline, kind, example.pk if example else None)
    messages.success(request, f"Saved how {pipeline.name} starts.")
    return redirect(f"{reverse('web:pipeline-detail', args=[pipeline.pk])}#first-run")
