"""REST API views: parse the request, call a domain service, shape the answer.

Every failure is a 4xx with {"detail", "errors"} (mlopen.api.errors): malformed query parameters
and bodies are validated here or by serializers before any domain code sees them.
"""

from __future__ import annotations

import tempfile

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch
from django.http import FileResponse, HttpResponse, HttpResponsePermanentRedirect, JsonResponse, StreamingHttpResponse
from django.urls import Resolver404, resolve, reverse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from mlopen.api import serializers as s
from mlopen.api.errors import error_response, refusal_response
from mlopen.api.pagination import MAX_PAGE_SIZE, positive_int
from mlopen.api.parsers import JSONParser, MultiPartParser  # DRF's, with a nesting limit and file paths kept
from mlopen.api.permissions import LoggedIn, OwnerOrAdminToChange
from mlopen.api.schema import AutoSchema, ErrorSerializer
from mlopen.api.sharing import ShareMixin
from mlopen.core import storage
from mlopen.core.access import PUBLIC, access
from mlopen.core.roles import can_upload_pipelines, role_of
from mlopen.datasets import rules as dataset_rules
from mlopen.datasets import services as dataset_services
from mlopen.datasets.models import Dataset
from mlopen.notifications import services as notification_services
from mlopen.notifications.models import Webhook
from mlopen.pipelines.interpreters import requirements_text
from mlopen.pipelines.maintainers import set_maintainers
from mlopen.pipelines.models import Pipeline, PipelineVersion, TrainedModel
from mlopen.pipelines.services import (
    IncomingFile,
    PipelineForbidden,
    PipelineRejected,
    UploadRequest,
    set_input_required,
    upload_pipeline,
)
from mlopen.runs import fairness, results, waiting
from mlopen.runs import images as result_images
from mlopen.runs import services as run_services
from mlopen.runs.models import Run

# Ids are 64-bit; a longer string of digits cannot name anything.
_MAX_ID = 2**63 - 1


class JSONErrorsNegotiation(DefaultContentNegotiation):
    """For operations whose success body is a file or plain text the view builds itself.

    Their errors are always JSON, whatever Accept header or ``?format=`` the client sent (``format``
    is the download's own parameter there, not DRF's renderer override).
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type


class ApiNegotiation(DefaultContentNegotiation):
    """DRF's, with a 404 that says what was wrong when ``?format=`` names no format."""

    def filter_renderers(self, renderers, format):
        kept = [renderer for renderer in renderers if renderer.format == format]
        if not kept:
            raise NotFound(f"There is no {format[:20]!r} format here; leave out ?format= to get JSON.")
        return kept


class ApiView:
    # Every API view's schema documents the error answers too (see mlopen.api.schema).
    schema = AutoSchema()
    permission_classes = [LoggedIn]  # declared, not inherited from settings: see mlopen.api.permissions
    content_negotiation_class = ApiNegotiation


class MeView(ApiView, APIView):
    """Who the token (or session) belongs to, and what they may do."""

    @extend_schema(responses=s.MeSerializer, operation_id="me_retrieve")
    def get(self, request):
        user = request.user
        return Response(
            s.MeSerializer(
                {
                    "id": user.pk,
                    "username": user.get_username(),
                    "email": user.email or "",
                    "first_name": user.first_name or "",
                    "last_name": user.last_name or "",
                    "role": role_of(user),
                    "is_admin": user.is_superuser,
                    "can_upload_pipelines": can_upload_pipelines(user),
                    "runs": fairness.usage_of(user),
                }
            ).data
        )


def _upload_request(request, data: dict, name: str) -> UploadRequest:
    return UploadRequest(
        control=IncomingFile.from_uploaded(data["control"]),
        support_files=[IncomingFile.from_uploaded(f) for f in request.FILES.getlist("support_files")],
        name=name,
        description=data.get("description", ""),
        requirements=IncomingFile.from_uploaded(data["requirements"]) if data.get("requirements") else None,
        support_zip=IncomingFile.from_uploaded(data["support_zip"]) if data.get("support_zip") else None,
        runtime=data.get("runtime", ""),
        input_required=data.get("input_required"),
    )


def _require_author(request) -> None:
    if not can_upload_pipelines(request.user):
        raise PermissionDenied("Uploading pipelines needs the author or admin role.")


class PipelineViewSet(ApiView, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Pipelines are visible to every logged-in user; uploading needs the author role, and a new version
    of an existing pipeline its owner, a maintainer or an admin (mlopen.pipelines.rules)."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]
    openapi_links = {
        action: {
            "GetPipeline": "pipelines_retrieve",
            "ListVersions": "pipelines_versions_list",
            "ListTrainedModels": "pipelines_models_list",
            "UploadVersion": "pipelines_versions_create",
        }
        for action in ("create", "versions")
    }

    def get_queryset(self):
        pipelines = (
            Pipeline.objects.visible_to(self.request.user)
            .order_by("name")
            .prefetch_related(
                Prefetch("versions", queryset=PipelineVersion.objects.order_by("-number")),
                Prefetch("trained_models", queryset=TrainedModel.objects.select_related("version").order_by("-number")),
            )
        )
        if self.action == "list" and self.request.query_params.get("name"):
            name = self.request.query_params["name"]
            if len(name) > 100 or "\x00" in name:
                raise ValidationError({"name": "Not a pipeline name."})
            pipelines = pipelines.filter(name=name)
        return pipelines

    def get_serializer_class(self):
        if self.action == "create":
            return s.PipelineUploadSerializer
        if self.action == "partial_update":
            return s.PipelineUpdateSerializer
        return s.PipelineDetailSerializer if self.action == "retrieve" else s.PipelineSerializer

    @extend_schema(parameters=[OpenApiParameter("name", str, description="only the pipeline with exactly this name")])
    def list(self, request, *args, **kwargs):
        """Every pipeline, by name, with its latest version's parameters and its current model."""
        return super().list(request, *args, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        """A pipeline with all its versions and trained models."""
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(request=s.PipelineUpdateSerializer, responses=s.PipelineDetailSerializer)
    def partial_update(self, request, pk=None):
        """Name the pipeline's maintainers (its owner or an admin): {"maintainers": ["username", ...]};
        say whether its runs need an input (its owner, a maintainer or an admin): {"input_required": true}."""
        pipeline = self.get_object()
        form = s.PipelineUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            with transaction.atomic():  # both or neither
                if "maintainers" in form.validated_data:
                    set_maintainers(pipeline, request.user, form.validated_data["maintainers"])
                if "input_required" in form.validated_data:
                    set_input_required(request.user, pipeline, form.validated_data["input_required"])
        except PipelineForbidden as exc:
            return error_response(exc.message, status_code=status.HTTP_403_FORBIDDEN)
        except PipelineRejected as exc:
            return error_response(exc.message, {exc.field: exc.message})
        return Response(
            s.PipelineDetailSerializer(self.get_queryset().get(pk=pipeline.pk), context={"request": request}).data
        )

    @extend_schema(
        request={"multipart/form-data": s.PipelineUploadSerializer}, responses={201: s.PipelineDetailSerializer}
    )
    def create(self, request):
        """Upload a control file (and support files): a new pipeline, or a new version of the one with that name."""
        _require_author(request)
        form = s.PipelineUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return self._store(request, _upload_request(request, form.validated_data, form.validated_data.get("name", "")))

    def _store(self, request, upload: UploadRequest) -> Response:
        try:
            version = upload_pipeline(upload, request.user)
        except PipelineForbidden as exc:
            return error_response(exc.message, status_code=status.HTTP_403_FORBIDDEN)
        except PipelineRejected as exc:
            return error_response(exc.message, {exc.field: exc.message} if exc.field else {}, exc.status)
        pipeline = self.get_queryset().get(pk=version.pipeline_id)
        body = s.PipelineDetailSerializer(pipeline, context={"request": request}).data
        return Response(
            body, status=status.HTTP_201_CREATED, headers={"Location": reverse("pipeline-detail", args=[pipeline.pk])}
        )

    @extend_schema(methods=["GET"], responses=s.PipelineVersionSerializer(many=True))
    @extend_schema(
        methods=["POST"],
        request={"multipart/form-data": s.PipelineVersionUploadSerializer},
        responses={201: s.PipelineDetailSerializer},
    )
    @action(detail=True, methods=["get", "post"], serializer_class=s.PipelineVersionSerializer)
    def versions(self, request, pk=None):
        """GET: the pipeline's versions, newest first. POST: upload its next version."""
        pipeline = self.get_object()
        if request.method == "POST":
            _require_author(request)
            form = s.PipelineVersionUploadSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            return self._store(request, _upload_request(request, form.validated_data, pipeline.name))
        page = self.paginate_queryset(pipeline.versions.order_by("-number"))
        return self.get_paginated_response(s.PipelineVersionSerializer(page, many=True).data)

    @extend_schema(responses=s.TrainedModelSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="models", serializer_class=s.TrainedModelSerializer)
    def trained_models(self, request, pk=None):
        """The models the pipeline's training runs saved, newest (the current one) first."""
        pipeline = self.get_object()
        page = self.paginate_queryset(pipeline.trained_models.select_related("version").order_by("-number"))
        return self.get_paginated_response(s.TrainedModelSerializer(page, many=True).data)


class DatasetViewSet(
    ApiView,
    ShareMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Files to run pipelines on. Each user sees their own datasets, those shared with them and the
    demo ones; admins see all."""

    permission_classes = [LoggedIn, OwnerOrAdminToChange]
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    serializer_class = s.DatasetSerializer
    openapi_links = {
        "create": {
            "GetDataset": "datasets_retrieve",
            "DownloadDataset": "datasets_download_retrieve",
            "PreviewDataset": "datasets_preview_retrieve",
            "DeleteDataset": "datasets_destroy",
        }
    }

    def get_queryset(self):
        return Dataset.objects.visible_to(self.request.user).select_related("owner")

    @extend_schema(request={"multipart/form-data": s.DatasetUploadSerializer}, responses={201: s.DatasetSerializer})
    def create(self, request):
        form = s.DatasetUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        uploaded = form.validated_data["file"]
        try:
            dataset = dataset_services.store_dataset(
                owner=request.user,
                name=form.validated_data.get("name", ""),
                filename=uploaded.name,
                chunks=uploaded.chunks(),
                content_type=getattr(uploaded, "content_type", "") or "",
                size=uploaded.size,
            )
        except dataset_services.DatasetRejected as exc:
            return error_response(exc.message, {exc.field: exc.message}, exc.status)
        return Response(
            s.DatasetSerializer(dataset).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("dataset-detail", args=[dataset.pk])},
        )

    def perform_destroy(self, dataset):
        # Demo datasets are visible to everyone, but only their owner (or an admin) may delete one.
        if not dataset_rules.can_manage(self.request.user, dataset):
            raise NotFound()
        dataset_services.delete_dataset(dataset)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    @action(
        detail=True, methods=["get"], renderer_classes=[JSONRenderer], content_negotiation_class=JSONErrorsNegotiation
    )
    def download(self, request, pk=None):
        dataset = self.get_object()
        if not storage.exists(dataset.file):
            return error_response(f"The file of dataset {dataset.pk} is missing from storage.", status_code=404)
        return FileResponse(
            storage.open_stored(dataset.file),
            as_attachment=True,
            filename=dataset.filename,
            content_type="application/octet-stream",
        )

    @extend_schema(responses=s.DatasetPreviewSerializer)
    @action(detail=True, methods=["get"])
    def preview(self, request, pk=None):
        """The first rows of a CSV, the first lines of a text file, or a zip file's entries."""
        return Response(dataset_services.preview(self.get_object()))


def _non_negative_int(raw: str, name: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValidationError({name: f"Must be a whole number, got {raw[:40]!r}."}) from None
    if value < 0:
        raise ValidationError({name: f"Must be 0 or more, got {value}."})
    return value


def _resolve_pipeline_filter(value: str, user) -> Pipeline:
    query = Pipeline.objects.visible_to(user)
    pipeline = None
    if value.isdigit() and int(value) <= _MAX_ID:
        pipeline = query.filter(pk=int(value)).first()
    if pipeline is None:
        pipeline = query.filter(name=value).first()
    if pipeline is None:
        raise ValidationError({"pipeline": f"There is no pipeline {value[:100]!r} (give its id or name)."})
    return pipeline


_RUN_ERRORS = {409: OpenApiResponse(ErrorSerializer, description="The run's state does not allow this.")}
# A result's image is served as a download; an SVG is a document that may hold script, so one
# opened on its own runs in a sandbox with nothing but its own styles (in <img> none runs anyway).
# A result's zip is built in memory up to this size, in a temporary file past it.
_ARCHIVE_IN_MEMORY_BYTES = 8 * 1024 * 1024
_IMAGE_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


class RunViewSet(ApiView, ShareMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Trains and runs of pipelines, newest first. Each user sees their own runs and those shared
    with them; admins see all."""

    permission_classes = [LoggedIn, OwnerOrAdminToChange]
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    submit_actions = ("create", "rerun")  # counted by the run-submission throttle (api.throttling)
    openapi_links = {
        action: {
            "GetRun": "runs_retrieve",
            "GetRunLogs": "runs_logs_retrieve",
            "GetRunResult": "runs_result_retrieve",
            "DownloadRunResult": "runs_download_retrieve",
            "CancelRun": "runs_cancel_create",
            "RerunRun": "runs_rerun_create",
        }
        for action in ("create", "rerun")
    }

    def get_queryset(self):
        runs = Run.objects.visible_to(self.request.user).select_related("pipeline", "version", "owner")
        if self.action != "list":
            return runs
        form = s.RunFilterSerializer(data=self.request.query_params)
        form.is_valid(raise_exception=True)
        filters = form.validated_data
        if filters.get("kind"):
            runs = runs.filter(kind=filters["kind"])
        if filters.get("status"):
            runs = runs.filter(status__in=filters["status"])
        if filters.get("pipeline"):
            runs = runs.filter(pipeline=_resolve_pipeline_filter(filters["pipeline"], self.request.user))
        if filters.get("user"):
            runs = runs.filter(owner__username=filters["user"])
        return runs

    def get_serializer_class(self):
        if self.action == "create":
            return s.RunCreateSerializer
        return s.RunDetailSerializer if self.action == "retrieve" else s.RunSerializer

    @extend_schema(parameters=[s.RunFilterSerializer])
    def list(self, request, *args, **kwargs):
        """Runs you can see, newest first, filtered by pipeline, kind, status or user."""
        return super().list(request, *args, **kwargs)

    @extend_schema(parameters=[s.RunWaitSerializer])
    def retrieve(self, request, *args, **kwargs):
        """A run: status, progress, error, parameters, the first page of its result and its metrics."""
        query = s.RunWaitSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        run = self._after_waiting(self.get_object(), query.validated_data.get("wait"))
        return Response(self.get_serializer(run).data)

    def _after_waiting(self, run: Run, seconds: float | None) -> Run:
        """`run` re-read once it has finished, waiting at most `seconds`; as it was if it did not finish."""
        if seconds and not run.is_finished and waiting.wait_until_finished(run.pk, seconds):
            return Run.objects.select_related("pipeline", "version", "owner").get(pk=run.pk)
        return run

    @extend_schema(request=s.RunCreateSerializer, responses={201: s.RunDetailSerializer, **_RUN_ERRORS})
    def create(self, request):
        """Queue a train or run of a pipeline's latest version. Parameter values are converted by type."""
        if not isinstance(request.data, dict):  # a JSON array, string or number
            return error_response(
                "Send a JSON object with pipeline, kind, input and params.",
                {"non_field_errors": f"Expected an object, got {type(request.data).__name__}."},
            )
        form = s.RunCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            run = run_services.submit_run(
                request.user,
                run_services.RunRequest(
                    pipeline=data["pipeline"],
                    kind=data["kind"],
                    input=data.get("input"),
                    params=data.get("params"),
                    timeout_seconds=data.get("timeout"),
                ),
            )
        except run_services.RunRefused as exc:
            return refusal_response(exc)
        run = self._after_waiting(run, data.get("wait"))
        return Response(
            s.RunDetailSerializer(run, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("run-detail", args=[run.pk])},
        )

    @extend_schema(
        parameters=[OpenApiParameter("offset", int, description="skip this many characters of the log (to tail it)")],
        responses={
            (200, "text/plain"): OpenApiResponse(
                OpenApiTypes.STR,
                description=(
                    "The log from `offset` on. Headers: X-Log-Offset (the offset to ask for next), "
                    "X-Run-Status (the run's status, to know when to stop tailing)."
                ),
            )
        },
    )
    @action(
        detail=True, methods=["get"], renderer_classes=[JSONRenderer], content_negotiation_class=JSONErrorsNegotiation
    )
    def logs(self, request, pk=None):
        """The run's output (stdout and stderr), growing while it runs."""
        run = self.get_object()
        raw = request.query_params.get("offset")
        offset = _non_negative_int(raw, "offset") if raw else 0
        log = run.log or ""
        response = HttpResponse(log[offset:], content_type="text/plain; charset=utf-8")
        response["X-Log-Offset"] = str(max(offset, len(log)))
        response["X-Run-Status"] = run.status
        return response

    @extend_schema(
        responses={
            (200, "text/plain"): OpenApiResponse(
                OpenApiTypes.STR,
                description="the run's packages pinned (name==version), after a comment naming its Python",
            )
        }
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="requirements.txt",
        renderer_classes=[JSONRenderer],
        content_negotiation_class=JSONErrorsNegotiation,
    )
    def requirements(self, request, pk=None):
        """The packages the run ran with, as a requirements file to reproduce it elsewhere."""
        run = self.get_object()
        if not run.environment:
            raise NotFound(f"Run {run.pk} has not started yet: its environment is recorded when it starts.")
        response = HttpResponse(requirements_text(run.environment), content_type="text/plain; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-requirements.txt"'
        return response

    @extend_schema(request=None, responses={200: s.RunDetailSerializer, **_RUN_ERRORS})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued run, or ask the worker to stop a running one. 409 if it already finished."""
        run = self.get_object()
        try:
            run = run_services.cancel_run(run)
        except run_services.RunRefused as exc:
            return refusal_response(exc)
        return Response(s.RunDetailSerializer(run, context={"request": request}).data)

    @extend_schema(request=s.RunWaitSerializer, responses={201: s.RunDetailSerializer, **_RUN_ERRORS})
    @action(detail=True, methods=["post"])
    def rerun(self, request, pk=None):
        """Queue a new run with the same pipeline, kind, input and params (on the latest version)."""
        run = self.get_object()
        if not isinstance(request.data, dict):  # a JSON array, string or number
            return error_response(
                'Send no body, or a JSON object such as {"wait": 30}.',
                {"non_field_errors": f"Expected an object, got {type(request.data).__name__}."},
            )
        form = s.RunWaitSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            new = run_services.rerun(request.user, run)
        except run_services.RunRefused as exc:
            return refusal_response(exc)
        new = self._after_waiting(new, form.validated_data.get("wait"))
        return Response(
            s.RunDetailSerializer(new, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("run-detail", args=[new.pk])},
        )

    def _result_folder(self, run: Run) -> str:
        if run.status != Run.Status.SUCCEEDED or not run.result_folder:
            reason = "it returned no result" if run.status == Run.Status.SUCCEEDED else f"it is {run.status}"
            raise NotFound(f"Run {run.pk} has no result: {reason}.")
        return run.result_folder

    @extend_schema(
        parameters=[
            OpenApiParameter("page", OpenApiTypes.INT, description="page number, from 1"),
            OpenApiParameter(
                "page_size",
                OpenApiTypes.INT,
                description=f"rows per page (default {settings.MLOPEN_RESULT_PAGE_SIZE}, at most {MAX_PAGE_SIZE})",
            ),
            OpenApiParameter("sort", OpenApiTypes.INT, description="index (from 0) of the column to sort by"),
            OpenApiParameter("order", str, enum=["asc", "desc"]),
        ],
        responses=s.ResultPageSerializer,
    )
    @action(detail=True, methods=["get"])
    def result(self, request, pk=None):
        """One page of the run's result table, with its graphs and text."""
        run = self.get_object()
        folder = self._result_folder(run)
        params = request.query_params
        page = positive_int(params["page"], "page") if params.get("page") else 1
        page_size = (
            positive_int(params["page_size"], "page_size", MAX_PAGE_SIZE)
            if params.get("page_size")
            else settings.MLOPEN_RESULT_PAGE_SIZE
        )
        sort = _non_negative_int(params["sort"], "sort") if params.get("sort") else None
        order = params.get("order") or "asc"
        if order not in ("asc", "desc"):
            raise ValidationError({"order": f"Use asc or desc, not {order[:40]!r}."})
        # A stored part that cannot be read is null, with why in body["problems"]: still a 200.
        body = results.page_of(folder, page, page_size, sort, order == "desc", expect_table=run.result_rows is not None)
        body["images"] = s.image_links(run, body["images"], request)
        if (
            sort is not None
            and body["columns"] is not None
            and body["data"] is not None
            and sort >= len(body["columns"])
        ):
            raise ValidationError(
                {"sort": f"The table has {len(body['columns'])} columns (0 to {len(body['columns']) - 1})."}
            )
        if body["rows"] is not None and page > body["pages"]:
            raise NotFound(f"Page {page} is past the last page ({body['pages']}).")
        return Response(body)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "format",
                str,
                enum=["csv", "json", "zip"],
                description="csv (default), json, or zip: the table as CSV and the result's images",
            )
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="the table as CSV"),
            (200, "application/json"): s.ResultRowsSerializer,
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="run-ID.csv (if there is a table) and images/<name> for each image"
            ),
        },
    )
    @action(
        detail=True, methods=["get"], renderer_classes=[JSONRenderer], content_negotiation_class=JSONErrorsNegotiation
    )
    def download(self, request, pk=None):
        """The whole result table as a CSV or JSON file, or the table and the result's images as a zip."""
        run = self.get_object()
        fmt = request.query_params.get("format") or "csv"
        if fmt not in ("csv", "json", "zip"):
            raise ValidationError({"format": f"Use csv, json or zip, not {fmt[:40]!r}."})
        folder = self._result_folder(run)
        if fmt == "zip":
            return self._archive(run, folder)
        if run.result_rows is None:
            raise NotFound(f"Run {run.pk}'s result has no table to download, only graphs or text.")
        # The table is the whole answer here: one that cannot be read is a 422 saying why, never a 500.
        try:
            if fmt == "json":
                response = Response(results.as_json_rows(folder))
                response["Content-Disposition"] = f'attachment; filename="run-{run.pk}.json"'
                return response
            lines = results.iter_csv(folder)  # reads the table now, before anything is sent
        except results.ResultUnreadable as exc:
            return error_response(str(exc), status_code=status.HTTP_422_UNPROCESSABLE_ENTITY)
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="run-{run.pk}.csv"'
        return response

    @extend_schema(
        responses={
            (200, content_type): OpenApiResponse(OpenApiTypes.BINARY, description="the image, as a download")
            for content_type in ("image/png", "image/jpeg", "image/svg+xml")
        },
    )
    @action(
        detail=True,
        methods=["get"],
        url_path=r"images/(?P<index>[0-9]{1,6})",
        url_name="image",
        renderer_classes=[JSONRenderer],
        content_negotiation_class=JSONErrorsNegotiation,
    )
    def image(self, request, pk=None, index=None):
        """Image number `index` (from 0) of the run's result, as listed in its `images`: PNG, JPEG or SVG."""
        run = self.get_object()
        folder = self._result_folder(run)
        entry = results.image_at(folder, int(index))
        if entry is None:
            raise NotFound(f"Run {run.pk}'s result has no image {index}.")
        try:
            handle = result_images.open_image(folder, entry)
        except FileNotFoundError:
            return error_response(f"Image {index} of run {run.pk} is missing from storage.", status_code=404)
        response = FileResponse(
            handle, as_attachment=True, filename=entry["name"], content_type=result_images.content_type(entry)
        )
        response["Content-Security-Policy"] = _IMAGE_CSP
        return response

    def _archive(self, run: Run, folder: str):
        """The table (if any) and the images of a result as one zip, built before anything is sent."""
        archive = tempfile.SpooledTemporaryFile(max_size=_ARCHIVE_IN_MEMORY_BYTES)
        try:
            images = results.write_archive(folder, archive, f"run-{run.pk}.csv", run.result_rows is not None)
        except results.ResultUnreadable as exc:
            archive.close()
            return error_response(str(exc), status_code=status.HTTP_422_UNPROCESSABLE_ENTITY)
        if run.result_rows is None and not images:
            archive.close()
            raise NotFound(f"Run {run.pk}'s result has neither a table nor images to download.")
        archive.seek(0)
        return FileResponse(archive, as_attachment=True, filename=f"run-{run.pk}.zip", content_type="application/zip")


class WebhookViewSet(
    ApiView, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """URLs called (a signed POST) when one's runs end. Each user sees and deletes only their own;
    another user's webhook is a 404, admins included."""

    parser_classes = [JSONParser]
    serializer_class = s.WebhookSerializer
    queryset = Webhook.objects.none()  # for the schema (the id's type); get_queryset is what serves

    def get_queryset(self):
        return Webhook.objects.filter(owner=self.request.user).select_related("pipeline")

    @extend_schema(request=s.WebhookCreateSerializer, responses={201: s.WebhookCreatedSerializer})
    def create(self, request):
        form = s.WebhookCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            webhook = notification_services.create_webhook(
                request.user,
                url=form.validated_data["url"],
                events=form.validated_data["events"],
                pipeline=form.validated_data.get("pipeline"),
            )
        except notification_services.WebhookRejected as exc:
            return error_response(exc.message, {exc.field: exc.message})
        return Response(
            s.WebhookCreatedSerializer(webhook).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("webhook-detail", args=[webhook.pk])},
        )

    def perform_destroy(self, webhook):
        notification_services.delete_webhook(webhook)

    @extend_schema(responses=s.WebhookDeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """The webhook's latest calls (at most 50 are kept), newest first."""
        webhook = self.get_object()
        page = self.paginate_queryset(webhook.deliveries.all())
        return self.get_paginated_response(s.WebhookDeliverySerializer(page, many=True).data)


@access(PUBLIC)  # anyone may be told there is nothing here
@csrf_exempt  # it changes nothing; a POST to a wrong URL should get the JSON 404, not a CSRF page
def not_found(request, path: str = ""):
    """Any other URL under /api/v1/: a JSON 404 (or the same URL with its missing slash)."""
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not not_found:
            query = request.META.get("QUERY_STRING", "")
            # 308 keeps the method and body, so a POST without the slash still works.
            response = HttpResponsePermanentRedirect(request.path + "/" + (f"?{query}" if query else ""))
            response.status_code = 308
            return response
    return JsonResponse({"detail": f"There is no API endpoint at {request.path[:200]}.", "errors": {}}, status=404)
