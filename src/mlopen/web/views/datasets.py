from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from mlopen.core.access import LOGGED_IN, MANAGE, VIEW, access
from mlopen.core.paging import KeysFirstPaginator
from mlopen.datasets import rules as dataset_rules
from mlopen.datasets import services, stats
from mlopen.datasets.models import Dataset
from mlopen.runs.models import Run
from mlopen.web.forms import DatasetUploadForm
from mlopen.web.views.sharing import apply_share_form, sharing_context


def _visible(request):
    return Dataset.objects.visible_to(request.user)


def _manageable(request):
    return Dataset.objects.manageable_by(request.user)


def _may_manage(user, dataset: Dataset) -> bool:
    return dataset_rules.can_manage(user, dataset)


@access(LOGGED_IN)
def dataset_list(request):
    datasets = _visible(request).select_related("owner")
    page = KeysFirstPaginator(datasets, 50).get_page(request.GET.get("page"))
    for dataset in page:
        dataset.deletable = _may_manage(request.user, dataset)
    return render(
        request,
        "web/datasets/list.html",
        {"page": page, "form": DatasetUploadForm(), "usage": services.storage_usage(request.user)},
    )


@access(LOGGED_IN)
@require_http_methods(["GET", "POST"])
def dataset_upload(request):
    form = DatasetUploadForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        uploaded = form.cleaned_data["file"]
        try:
            dataset = services.store_dataset(
                owner=request.user,
                name=form.cleaned_data["name"],
                filename=uploaded.name,
                chunks=uploaded.chunks(),
                content_type=getattr(uploaded, "content_type", "") or "",
                size=uploaded.size,
                reuse_identical=True,
            )
        except services.DatasetUnchanged as exc:
            messages.info(request, exc.message)
            return redirect("web:dataset-detail", pk=exc.dataset.pk)
        except services.DatasetRejected as exc:
            form.add_refusal(exc.field, exc.message)
            status = exc.status
        else:
            messages.success(request, f"Dataset “{dataset.name}” is uploaded.")
            return redirect("web:dataset-detail", pk=dataset.pk)
    if form.errors and status == 200:
        status = 400
    return render(request, "web/datasets/upload.html", {"form": form}, status=status)


@access(VIEW)
def dataset_detail(request, pk: int):
    dataset = get_object_or_404(_visible(request).select_related("owner"), pk=pk)
    runs = Run.objects.visible_to(request.user).filter(input=dataset).select_related("pipeline", "owner")[:10]
    manageable = _may_manage(request.user, dataset)
    return render(
        request,
        "web/datasets/detail.html",
        {
            "dataset": dataset,
            "preview": services.preview(dataset),
            "stats": stats.column_stats(dataset),
            "runs": runs,
            "deletable": manageable,
            "sharing": sharing_context(request, dataset, manageable) if not dataset.is_demo else None,
        },
    )


@access(MANAGE)
@require_http_methods(["GET", "POST"])
def dataset_delete(request, pk: int):
    # Someone else's dataset is a 404 here even when it is shared with this user or a demo one.
    dataset = get_object_or_404(_manageable(request), pk=pk)
    if request.method == "POST":
        name = dataset.name
        services.delete_dataset(dataset)
        messages.success(request, f"Dataset “{name}” is deleted.")
        return redirect("web:dataset-list")
    return render(request, "web/datasets/delete.html", {"dataset": dataset})


@access(MANAGE)
@require_POST
def dataset_share(request, pk: int):
    dataset = get_object_or_404(_manageable(request), pk=pk)
    apply_share_form(request, dataset, "dataset")
    return redirect("web:dataset-detail", pk=dataset.pk)
