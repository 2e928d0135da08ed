"""REST API views: parse the request, call a domain service, shape the answer."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Prefetch
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from mlopen.api import serializers as s
from mlopen.api.errors import error_response
from mlopen.core import storage
from mlopen.core.roles import can_upload_pipelines
from mlopen.datasets import services as dataset_services
from mlopen.datasets.models import Dataset
from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen.pipelines.services import IncomingFile, PipelineRejected, UploadRequest, upload_pipeline
from mlopen.runs import results
from mlopen.runs import services as run_services
from mlopen.runs.models import Run


class CSVPassthroughRenderer(BaseRenderer):
    """Lets `?format=csv` through DRF's format negotiation; the view streams the CSV itself."""

    media_type = "text/csv"
    format = "csv"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else str(data).encode()


class PipelineViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Pipelines are visible to every logged-in user; uploading needs the author role."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def get_queryset(self):
        return Pipeline.objects.order_by("name").prefetch_related(
            Prefetch("versions", queryset=PipelineVersion.objects.order_by("-number")))

    def get_serializer_class(self):
        if self.action == "create":
            return s.PipelineUploadSerializer
        return s.PipelineDetailSerializer if self.action == "retrieve" else s.PipelineSerializer

    @extend_schema(request=s.PipelineUploadSerializer, responses={201: s.PipelineDetailSerializer})
    def create(self, request):
        if not can_upload_pipelines(request.user):
            raise PermissionDenied("Uploading pipelines needs the author or admin role.")
        form = s.PipelineUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        upload = UploadRequest(
            control=IncomingFile.from_uploaded(data["control"]),
            support_files=[IncomingFile.from_uploaded(f) for f in request.FILES.getlist("support_files")],
            name=data.get("name", ""), description=data.get("description", ""),
            requirements=IncomingFile.from_uploaded(data["requirements"]) if data.get("requirements") else None,
        )
        try:
            version = upload_pipeline(upload, request.user)
        except PipelineRejected as exc:
            return error_response(exc.message, {exc.field: exc.message})
        body = s.PipelineDetailSerializer(version.pipeline, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED)


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                     viewsets.GenericViewSet):
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    serializer_class = s.DatasetSerializer

    def get_queryset(self):
        return Dataset.objects.visible_to(self.request.user).select_related("owner")

    @extend_schema(request=s.DatasetUploadSerializer, responses={201: s.DatasetSerializer})
    def create(self, request):
        form = s.DatasetUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        uploaded = form.validated_data["file"]
        try:
            dataset = dataset_services.store_dataset(
                owner=request.user, name=form.validated_data.get("name", ""), filename=uploaded.name,
                chunks=uploaded.chunks(), content_type=getattr(uploaded, "content_type", "") or "")
        except dataset_services.DatasetRejected as exc:
            return error_response(exc.message, {exc.field: exc.message})
        return Response(s.DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, dataset):
        if dataset.owner_id != self.request.user.pk and not self.request.user.is_superuser:
            raise NotFound()
        dataset_services.delete_dataset(dataset)

    @extend_schema(responses={200: OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        dataset = self.get_object()
        return FileResponse(storage.open_stored(dataset.file), as_attachment=True, filename=dataset.filename,
                            content_type="application/octet-stream")

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def preview(self, request, pk=None):
        return Response(dataset_services.preview(self.get_object()))


def _positive_int(request, name: str, default: int, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: f"Must be a whole number, got {raw[:40]!r}."}) from None
    if value < 1:
        raise ValidationError({name: "Must be 1 or more."})
    if maximum is not None and value > maximum:
        raise ValidationError({name: f"Must be at most {maximum}."})
    return value


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_queryset(self):
        runs = Run.objects.visible_to(self.request.user).select_related("pipeline", "version", "owner")
        params = self.request.query_params
        for field in ("kind", "status"):
            if params.get(field):
                runs = runs.filter(**{field: params[field]})
        if params.get("pipeline"):
            value = params["pipeline"]
            runs = runs.filter(pipeline_id=int(value)) if value.isdigit() else runs.filter(pipeline__name=value)
        if params.get("user"):
            runs = runs.filter(owner__username=params["user"])
        return runs

    def get_serializer_class(self):
        if self.action == "create":
            return s.RunCreateSerializer
        return s.RunDetailSerializer if self.action == "retrieve" else s.RunSerializer

    @extend_schema(request=s.RunCreateSerializer, responses={201: s.RunDetailSerializer})
    def create(self, request):
        if not isinstance(request.data, dict):
            return error_response("Send a JSON object with pipeline, kind, input and params.")
        form = s.RunCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            run = run_services.submit_run(request.user, run_services.RunRequest(
                pipeline=data["pipeline"], kind=data["kind"], input=data.get("input"), params=data.get("params"),
                timeout_seconds=data.get("timeout")))
        except run_services.RunRefused as exc:
            return error_response(exc.message, exc.errors, exc.status)
        return Response(s.RunDetailSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: OpenApiTypes.STR})
    @action(detail=True, methods=["get"])
    def logs(self, request, pk=None):
        return HttpResponse(self.get_object().log, content_type="text/plain; charset=utf-8")

    @extend_schema(request=None, responses={200: s.RunDetailSerializer, 409: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        try:
            run = run_services.cancel_run(run)
        except run_services.RunRefused as exc:
            return error_response(exc.message, exc.errors, exc.status)
        return Response(s.RunDetailSerializer(run).data)

    @extend_schema(request=None, responses={201: s.RunDetailSerializer})
    @action(detail=True, methods=["post"])
    def rerun(self, request, pk=None):
        run = self.get_object()
        try:
            new = run_services.rerun(request.user, run)
        except run_services.RunRefused as exc:
            return error_response(exc.message, exc.errors, exc.status)
        return Response(s.RunDetailSerializer(new).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[
        OpenApiParameter("page", int), OpenApiParameter("page_size", int),
        OpenApiParameter("sort", int, description="column index to sort by"),
        OpenApiParameter("order", str, enum=["asc", "desc"])], responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def result(self, request, pk=None):
        run = self.get_object()
        if run.status != Run.Status.SUCCEEDED or not run.result_folder:
            return error_response(f"Run {run.pk} has no result (status {run.status}).", status_code=404)
        page = _positive_int(request, "page", 1)
        page_size = _positive_int(request, "page_size", settings.MLOPEN_RESULT_PAGE_SIZE, maximum=1000)
        sort = request.query_params.get("sort")
        sort_index = _positive_int(request, "sort", 1) - 1 if sort not in (None, "") and sort != "0" else (
            0 if sort == "0" else None)
        order = request.query_params.get("order", "asc")
        if order not in ("asc", "desc"):
            raise ValidationError({"order": "Use asc or desc."})
        body = results.page_of(run.result_folder, page, page_size, sort_index, order == "desc")
        if body["rows"] is not None and page > body["pages"]:
            return error_response(f"Page {page} is past the last page ({body['pages']}).", {"page": "Out of range."},
                                  status_code=404)
        return Response(body)

    @extend_schema(parameters=[OpenApiParameter("format", str, enum=["csv", "json"])],
                   responses={200: OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"], url_path="download",
            renderer_classes=[JSONRenderer, CSVPassthroughRenderer])
    def download(self, request, pk=None):
        run = self.get_object()
        if run.status != Run.Status.SUCCEEDED or not run.result_folder:
            return error_response(f"Run {run.pk} has no result (status {run.status}).", status_code=404)
        fmt = request.query_params.get("format") or "csv"
        if fmt == "json":
            response = Response(results.as_json_rows(run.result_folder))
            response["Content-Disposition"] = f'attachment; filename="run-{run.pk}.json"'
            return response
        if fmt != "csv":
            raise ValidationError({"format": "Use csv or json."})
        response = StreamingHttpResponse(results.iter_csv(run.result_folder), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="run-{run.pk}.csv"'
        return response

