"""The files of a pipeline version: their list, and each one's bytes.

Readable by whoever may run the pipeline (``visible_to``, as for the pipeline itself); anyone else
gets the same 404 as for a pipeline that does not exist.
"""

from __future__ import annotations

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from mlopen.api.views import ApiView, JSONErrorsNegotiation
from mlopen.pipelines import sources
from mlopen.pipelines.models import Pipeline, PipelineVersion


class VersionFileSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="relative to the version's folder, '/' between folders")
    size = serializers.IntegerField(allow_null=True, help_text="in bytes; null if missing from storage")
    control = serializers.BooleanField(help_text="true for the control file")


class VersionFilesSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    control_filename = serializers.CharField()
    files = VersionFileSerializer(many=True)


_PATH_PARAMETERS = [
    OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="the pipeline's id"),
    OpenApiParameter("number", OpenApiTypes.INT, OpenApiParameter.PATH, description="the version's number"),
]


def _version(request, pk: int, number: int) -> PipelineVersion:
    pipeline = get_object_or_404(Pipeline.objects.visible_to(request.user), pk=pk)
    return get_object_or_404(pipeline.versions, number=number)


class VersionFilesView(ApiView, APIView):
    @extend_schema(
        operation_id="pipelines_versions_files_list", parameters=_PATH_PARAMETERS, responses=VersionFilesSerializer
    )
    def get(self, request, pk: int, number: int):
        """The version's files: its control file first, then its support files by path."""
        version = _version(request, pk, number)
        files = [{"path": f.path, "size": f.size, "control": f.is_control} for f in sources.files_of(version)]
        return Response({"version": version.number, "control_filename": version.control_filename, "files": files})


class VersionFileView(ApiView, APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONErrorsNegotiation

    @extend_schema(
        operation_id="pipelines_versions_files_retrieve",
        parameters=[
            *_PATH_PARAMETERS,
            OpenApiParameter(
                "path", OpenApiTypes.STR, OpenApiParameter.PATH, description="the file's path, as listed by the version"
            ),
        ],
        responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="the file")},
    )
    def get(self, request, pk: int, number: int, path: str):
        """One file of the version, as stored (the source a run of this version gets)."""
        version = _version(request, pk, number)
        try:
            local = sources.local_file(version, path)
        except sources.FileMissing:
            raise NotFound(f"Version {version.number} has no file {path[:200]!r}.") from None
        return FileResponse(
            open(local, "rb"), as_attachment=True, filename=local.name, content_type="application/octet-stream"
        )
