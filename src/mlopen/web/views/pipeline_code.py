"""A pipeline's code, per version: the tree of its files, each file's source, a download, and a diff.

Whoever may run the pipeline may read its code (``visible_to``, as for the pipeline's page); anyone
else gets a 404, as for a pipeline that does not exist.
"""

from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render

from mlopen.core.access import VIEW, access
from mlopen.core.numbers import parse_int
from mlopen.pipelines import sources
from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen.web.highlight import highlighted


def _version(request, pk: int, number: int) -> PipelineVersion:
    pipeline = get_object_or_404(Pipeline.objects.visible_to(request.user), pk=pk)
    return get_object_or_404(pipeline.versions.select_related("pipeline"), number=number)


@access(VIEW)
def version_files(request, pk: int, number: int, path: str = ""):
    """The version's tree beside one file's source (the control file when none is named)."""
    version = _version(request, pk, number)
    path = path or version.control_filename
    try:
        source = sources.read_source(version, path)
    except sources.FileMissing:
        raise Http404("No such file in this version.") from None
    files = sources.files_of(version)
    versions = list(version.pipeline.versions.order_by("-number").values_list("number", flat=True))
    return render(
        request,
        "web/pipelines/code.html",
        {
            "pipeline": version.pipeline,
            "version": version,
            "versions": versions,
            "tree": sources.tree_of(files),
            "source": source,
            "code": highlighted(path, source.text) if source.text is not None else None,
            "line_count": len(source.text.splitlines()) if source.text else 0,
        },
    )


@access(VIEW)
def version_file_download(request, pk: int, number: int, path: str):
    version = _version(request, pk, number)
    try:
        local = sources.local_file(version, path)
    except sources.FileMissing:
        raise Http404("No such file in this version.") from None
    # An attachment of no particular type: a stored .html or .svg is never shown as a page of ours.
    return FileResponse(
        open(local, "rb"), as_attachment=True, filename=local.name, content_type="application/octet-stream"
    )


def _number(raw: str | None, default: int | None) -> int | None:
    value = parse_int(raw, maximum=2**31 - 1)
    return default if value is None else value


@access(VIEW)
def version_compare(request, pk: int):
    """What changed between two versions (?from=1&to=2; by default the latest and the one before)."""
    pipeline = get_object_or_404(Pipeline.objects.visible_to(request.user), pk=pk)
    numbers = list(pipeline.versions.order_by("-number").values_list("number", flat=True))
    if not numbers:
        raise Http404("This pipeline has no version.")
    new_number = _number(request.GET.get("to"), numbers[0])
    old_number = _number(request.GET.get("from"), next((n for n in numbers if n < new_number), new_number))
    versions = {v.number: v for v in pipeline.versions.filter(number__in=[old_number, new_number])}
    if old_number not in versions or new_number not in versions:
        raise Http404("No such version.")
    changes = sources.diff_versions(versions[old_number], versions[new_number])
    return render(
        request,
        "web/pipelines/compare.html",
        {
            "pipeline": pipeline,
            "old": versions[old_number],
            "new": versions[new_number],
            "numbers": numbers,
            "changes": changes,
            "changed": [change for change in changes if change.status != "same"],
            "same_count": sum(1 for change in changes if change.status == "same"),
        },
    )
