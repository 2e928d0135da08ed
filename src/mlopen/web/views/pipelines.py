from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max
from django.shortcuts import get_object_or_404, redirect, render

from mlopen.core.roles import can_upload_pipelines
from mlopen.pipelines import params as params_mod
from mlopen.pipelines.models import Pipeline
from mlopen.pipelines.services import IncomingFile, PipelineRejected, UploadRequest, upload_pipeline
from mlopen.runs.models import Run
from mlopen.web.forms import PipelineUploadForm


@login_required
def pipeline_list(request):
    pipelines = Pipeline.objects.annotate(
        version_count=Count("versions", distinct=True),
        latest_number=Max("versions__number"),
        model_count=Count("trained_models", distinct=True),
    ).order_by("name")
    return render(request, "web/pipelines/list.html", {
        "pipelines": pipelines, "can_upload": can_upload_pipelines(request.user)})


def _param_rows(spec: list[dict]) -> list[dict]:
    return [{**field, "required": params_mod.is_required(field)} for field in spec]


@login_required
def pipeline_detail(request, pk: int):
    pipeline = get_object_or_404(Pipeline, pk=pk)
    versions = list(pipeline.versions.select_related("created_by").order_by("-number"))
    latest = versions[0] if versions else None
    models = list(pipeline.trained_models.select_related("run", "version").order_by("-number"))
    for model in models:
        model.run_visible = model.run is not None and (
            model.run.owner_id == request.user.pk or request.user.is_superuser)
    recent_runs = Run.objects.visible_to(request.user).filter(pipeline=pipeline).select_related("version", "owner")[:10]
    return render(request, "web/pipelines/detail.html", {
        "pipeline": pipeline,
        "versions": versions,
        "latest": latest,
        "train_params": _param_rows(latest.params_train) if latest else [],
        "run_params": _param_rows(latest.params_run) if latest else [],
        "models": models,
        "show_saved_as": any(model.label or model.model_names or model.arg_names for model in models),
        "recent_runs": recent_runs,
        "can_upload": can_upload_pipelines(request.user),
    })


@login_required
def pipeline_upload(request):
    if not can_upload_pipelines(request.user):
        raise PermissionDenied("Uploading pipelines needs the author or admin role.")
    form = PipelineUploadForm(request.POST or None, request.FILES or None,
                              initial={"name": request.GET.get("name", "")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        upload = UploadRequest(
            control=IncomingFile.from_uploaded(data["control"]),
            support_files=[IncomingFile.from_uploaded(f) for f in data["support_files"]],
            name=data["name"], description=data["description"],
            requirements=IncomingFile.from_uploaded(data["requirements"]) if data["requirements"] else None,
        )
        try:
            version = upload_pipeline(upload, request.user)
        except PipelineRejected as exc:
            form.add_refusal(exc.field, exc.message)
        else:
            messages.success(request, f"{version.pipeline.name} version {version.number} is uploaded and ready.")
            return redirect("web:pipeline-detail", pk=version.pipeline_id)
    return render(request, "web/pipelines/upload.html", {"form": form}, status=400 if form.errors else 200)
