from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from mlopen.datasets import services
from mlopen.datasets.models import Dataset
from mlopen.runs.models import Run
from mlopen.web.forms import DatasetUploadForm


def _visible(request):
    return Dataset.objects.visible_to(request.user)


def _may_delete(user, dataset: Dataset) -> bool:
    return dataset.owner_id == user.pk or user.is_superuser


@login_required
def dataset_list(request):
    datasets = _visible(request).select_related("owner")
    page = Paginator(datasets, 50).get_page(request.GET.get("page"))
    for dataset in page:
        dataset.deletable = _may_delete(request.user, dataset)
    return render(request, "web/datasets/list.html", {"page": page, "form": DatasetUploadForm()})


@login_required
@require_http_methods(["GET", "POST"])
def dataset_upload(request):
    form = DatasetUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        uploaded = form.cleaned_data["file"]
        try:
            dataset = services.store_dataset(owner=request.user, name=form.cleaned_data["name"],
                                             filename=uploaded.name, chunks=uploaded.chunks(),
                                             content_type=getattr(uploaded, "content_type", "") or "")
        except services.DatasetRejected as exc:
            form.add_refusal(exc.field, exc.message)
        else:
            messages.success(request, f"Dataset “{dataset.name}” is uploaded.")
            return redirect("web:dataset-detail", pk=dataset.pk)
    return render(request, "web/datasets/upload.html", {"form": form}, status=400 if form.errors else 200)


@login_required
def dataset_detail(request, pk: int):
    dataset = get_object_or_404(_visible(request).select_related("owner"), pk=pk)
    runs = Run.objects.visible_to(request.user).filter(input=dataset).select_related("pipeline", "owner")[:10]
    return render(request, "web/datasets/detail.html", {
        "dataset": dataset, "preview": services.preview(dataset), "runs": runs,
        "deletable": _may_delete(request.user, dataset)})


@login_required
@require_http_methods(["GET", "POST"])
def dataset_delete(request, pk: int):
    dataset = get_object_or_404(_visible(request), pk=pk)
    if not _may_delete(request.user, dataset):
        raise Http404("Only the owner of a dataset can delete it.")
    if request.method == "POST":
        name = dataset.name
        services.delete_dataset(dataset)
        messages.success(request, f"Dataset “{name}” is deleted.")
        return redirect("web:dataset-list")
    return render(request, "web/datasets/delete.html", {"dataset": dataset})
