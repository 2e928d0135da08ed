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
from mlopen.api.pagination import MAX_PAGE_SIZE, KeysetPagination, positive_int
from mlopen.api.parsers import JSONParser, MultiPartParser  # DRF's, with a nesting limit and file paths kept
from mlopen.api.permissions import LoggedIn, OwnerOrAdminToChange
from mlopen.api.registry_serializers import ModelSummarySerializer
from mlopen.api.schema import AutoSchema, ErrorSerializer
from mlopen.api.sharing import ShareMixin
from mlopen.core import storage
from mlopen.core.access import PUBLIC, access
from mlopen.core.numbers import MAX_INT, parse_id, parse_int
from mlopen.core.roles import can_upload_pipelines, role_of
from mlopen.datasets import rules as dataset_rules
from mlopen.datasets import services as dataset_services
from mlopen.datasets import stats as dataset_stats
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
    PipelineUnchanged,
    UploadRequest,
    set_input_required,
    set_retention_days,
    upload_pipeline,
)
from mlopen.runs import compare as run_compare
from mlopen.runs import fairness, labels, removal, result_queries, results, waiting
from mlopen.runs import images as result_images
from mlopen.runs import logs as run_logs
from mlopen.runs import lookups as run_lookups
from mlopen.runs import search as run_search
from mlopen.runs import services as run_services
from mlopen.runs.models import Run


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

    def get_object(self):
        """A generic view's object, after its id: one that is not digits within the database's range
        (``²``, 20 digits) is the same 404 as an id that names nothing, never an overflow in the query."""
        raw = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)
        if raw is not None and parse_id(str(raw)) is None:
            raise NotFound()
        return super().get_object()  # type: ignore[misc]  # mixed into DRF's generic views only

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
        say whether its runs need an input (its owner, a maintainer or an admin): {"input_required": true};
        how long its finished runs are kept: {"retention_days": 30} (null: the platform's setting, 0: forever)."""
        pipeline = self.get_object()
        form = s.PipelineUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            with transaction.atomic():  # both or neither
                if "maintainers" in form.validated_data:
                    set_maintainers(pipeline, request.user, form.validated_data["maintainers"])
                if "input_required" in form.validated_data:
                    set_input_required(request.user, pipeline, form.validated_data["input_required"])
                if "retention_days" in form.validated_data:
                    set_retention_days(request.user, pipeline, form.validated_data["retention_days"])
        except PipelineForbidden as exc:
            return error_response(exc.message, status_code=status.HTTP_403_FORBIDDEN)
        except PipelineRejected as exc:
            return error_response(exc.message, {exc.field: exc.message})
        return Response(
            s.PipelineDetailSerializer(self.get_queryset().get(pk=pipeline.pk), context={"request": request}).data
        )

    @extend_schema(
        request={"multipart/form-data": s.PipelineUploadSerializer},
        # 200: the files are exactly the latest version's; that version is answered, with "message".
        responses={201: s.PipelineDetailSerializer, 200: s.PipelineDetailSerializer},
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
        except PipelineUnchanged as exc:
            # The same files as the latest version: 200 with that version, and why nothing new was made.
            pipeline = self.get_queryset().get(pk=exc.version.pipeline_id)
            body = s.PipelineDetailSerializer(pipeline, context={"request": request}).data
            return Response({**body, "unchanged": True, "message": exc.message}, status=status.HTTP_200_OK)
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
        responses={201: s.PipelineDetailSerializer, 200: s.PipelineDetailSerializer},
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

    @extend_schema(responses=ModelSummarySerializer(many=True))
    @action(detail=True, methods=["get"], url_path="models", serializer_class=ModelSummarySerializer)
    def trained_models(self, request, pk=None):
        """The models the pipeline's training runs saved, newest first, with their aliases."""
        pipeline = self.get_object()
        models = pipeline.trained_models.select_related("version").prefetch_related("aliases").order_by("-number")
        page = self.paginate_queryset(models)
        return self.get_paginated_response(ModelSummarySerializer(page, many=True).data)


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

    # 200: the same owner already has a dataset of that name with exactly these bytes; it is answered.
    @extend_schema(
        request={"multipart/form-data": s.DatasetUploadSerializer},
        responses={201: s.DatasetSerializer, 200: s.DatasetSerializer},
    )
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
                reuse_identical=True,
            )
        except dataset_services.DatasetUnchanged as exc:
            body = s.DatasetSerializer(exc.dataset).data
            return Response({**body, "unchanged": True, "message": exc.message}, status=status.HTTP_200_OK)
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

    @extend_schema(
        responses={
            200: s.DatasetStatsSerializer,
            404: OpenApiResponse(ErrorSerializer, description="not a CSV dataset, or its file is missing"),
            422: OpenApiResponse(ErrorSerializer, description="the CSV cannot be parsed"),
        }
    )
    @action(detail=True, methods=["get"])
    def stats(self, request, pk=None):
        """A CSV's row count and, per column, its type, empty and distinct values, min, max and mean,
        from at most the file's first 8 MB (50 000 rows): ``complete`` says whether that was all of it."""
        dataset = self.get_object()
        if not storage.exists(dataset.file):
            return error_response(f"The file of dataset {dataset.pk} is missing from storage.", status_code=404)
        found = dataset_stats.column_stats(dataset)
        if found is None:  # the domain's answer for a file that is not a CSV
            return error_response(
                f"Statistics are computed for CSV tables only; {dataset.filename!r} is not one "
                f"(GET /api/v1/datasets/{dataset.pk}/preview/ shows what it holds).",
                status_code=404,
            )
        if "problem" in found:
            return error_response(found["problem"], status_code=422)
        return Response(s.DatasetStatsSerializer(found).data)


def _non_negative_int(raw: str, name: str) -> int:
    value = parse_int(raw)
    if value is None:
        raise ValidationError({name: f"Must be a whole number from 0 to {MAX_INT}, got {raw[:40]!r}."})
    return value


_RUN_ERRORS = {409: OpenApiResponse(ErrorSerializer, description="The run's state does not allow this.")}
# A result's image is served as a download; an SVG is a document that may hold script, so one
# opened on its own runs in a sandbox with nothing but its own styles (in <img> none runs anyway).
# A result's zip is built in memory up to this size, in a temporary file past it.
_ARCHIVE_IN_MEMORY_BYTES = 8 * 1024 * 1024
_IMAGE_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


_TABLE_QUERY_PARAMETERS = [
    OpenApiParameter("sort", OpenApiTypes.INT, description="index (from 0) of the column to sort by"),
    OpenApiParameter("order", str, enum=["asc", "desc"]),
    OpenApiParameter(
        "filter",
        str,
        many=True,
        description="column:op:value, repeatable (all must hold); column is a name or an index from 0, "
        f"op one of {', '.join(result_queries.OPS)}; numbers compare as numbers",
    ),
    OpenApiParameter("search", str, description="keep rows with a cell containing this text (ignoring case)"),
]


def _table_query(params) -> result_queries.TableQuery:
    """sort, order, filter (repeated) and search of a result request; 400 naming the bad one."""
    sort = _non_negative_int(params["sort"], "sort") if params.get("sort") else None
    order = params.get("order") or "asc"
    if order not in ("asc", "desc"):
        raise ValidationError({"order": f"Use asc or desc, not {order[:40]!r}."})
    filters = tuple(f for f in params.getlist("filter") if f)
    search = params.get("search") or ""
    if len(search) > 200:
        raise ValidationError({"search": "At most 200 characters."})
    return result_queries.TableQuery(filters, search, sort, order == "desc")


class RunViewSet(
    ApiView,
    ShareMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Trains and runs of pipelines, newest first. Each user sees their own runs and those shared
    with them; admins see all."""

    permission_classes = [LoggedIn, OwnerOrAdminToChange]
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    pagination_class = KeysetPagination
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

    # Bodies that are JSON objects only (a form-encoded "tags=a" is a 415, not a one-tag list).
    JSON_ONLY_ACTIONS = {"partial_update", "rerun"}

    def get_parsers(self):
        # Called before DRF sets self.action; the action map says which action the method is.
        method = getattr(getattr(self, "request", None), "method", "") or ""
        if getattr(self, "action_map", {}).get(method.lower()) in self.JSON_ONLY_ACTIONS:
            return [JSONParser()]
        return super().get_parsers()

    # Detail actions that clients repeat while they watch a run: found by a statement compiled once
    # (mlopen.runs.lookups) rather than by get_queryset's, which the ORM builds anew each time.
    COMPILED_LOOKUP_ACTIONS = {"retrieve", "logs"}

    def get_object(self):
        if self.action not in self.COMPILED_LOOKUP_ACTIONS:
            return super().get_object()
        run_id = parse_id(str(self.kwargs.get(self.lookup_url_kwarg or self.lookup_field, "")))
        # The log tail needs the run's status alone, not its pipeline, version, owner and result.
        find = run_lookups.visible_run_alone if self.action == "logs" else run_lookups.visible_run
        run = find(self.request.user, run_id) if run_id is not None else None
        if run is None:
            raise NotFound()  # the answer DRF's lookup gives, for a run that is not there or not yours
        self.check_object_permissions(self.request, run)
        return run

    def get_queryset(self):
        runs = (
            Run.objects.visible_to(self.request.user)
            .select_related("pipeline", "version", "owner")
            .prefetch_related("tags")
        )
        if self.action != "list":
            return runs
        try:
            found, self.search = run_search.search_runs(runs, self.request.query_params, self.request.user)
        except run_search.SearchInvalid as exc:
            raise ValidationError(exc.errors) from None
        return found

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "search": getattr(self, "search", None)}

    def get_serializer_class(self):
        if self.action == "create":
            return s.RunCreateSerializer
        return s.RunDetailSerializer if self.action == "retrieve" else s.RunSerializer

    @extend_schema(parameters=[s.RunFilterSerializer])
    def list(self, request, *args, **kwargs):
        """Runs you can see, newest first: found by text, tag, pipeline, version, kind, status, user or
        creation date, ordered by creation, duration or a metric, with chosen parameter and metric columns."""
        return super().list(request, *args, **kwargs)

    @extend_schema(request=s.RunLabelsSerializer, responses=s.RunDetailSerializer)
    def partial_update(self, request, pk=None):
        """Name, notes (markdown) and tags of a run: its owner or an admin. Only these fields change."""
        run = self.get_object()
        if not isinstance(request.data, dict):
            return error_response(
                'Send a JSON object such as {"name": "baseline", "tags": ["lr-sweep"]}.',
                {"non_field_errors": f"Expected an object, got {type(request.data).__name__}."},
            )
        form = s.RunLabelsSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            labels.set_labels(run, labels.Labels(**form.validated_data))
        except labels.LabelsRefused as exc:
            return error_response(str(exc), exc.errors)
        return Response(s.RunDetailSerializer(self.get_queryset().get(pk=run.pk), context={"request": request}).data)

    @extend_schema(responses={204: None, **_RUN_ERRORS})
    def destroy(self, request, pk=None):
        """Delete a finished run with its result, metrics and log (its owner or an admin). A queued or
        running run is a 409: cancel it first. A model it trained is kept."""
        run = self.get_object()
        try:
            removal.delete_runs([run])
        except removal.DeleteRefused as exc:
            return error_response(exc.message, exc.errors, exc.status)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=s.RunIdsSerializer, responses={200: s.DeletedSerializer, **_RUN_ERRORS})
    @action(detail=False, methods=["post"], url_path="bulk-delete", url_name="bulk-delete")
    def bulk_delete(self, request):
        """Delete several finished runs at once: all of them, or none (404 if any is not yours to
        delete, 409 if any is still queued or running)."""
        if not isinstance(request.data, dict):
            return error_response('Send {"ids": [1, 2, 3]}.', {"ids": "Expected an object with ids."})
        form = s.RunIdsSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            runs = removal.manageable_runs(request.user, form.validated_data["ids"])
            deleted = removal.delete_runs(runs)
        except removal.DeleteRefused as exc:
            if exc.status == 404:  # the same answer as for any run one may not delete
                raise NotFound() from None
            return error_response(exc.message, exc.errors, exc.status)
        return Response({"deleted": deleted})

    @extend_schema(
        parameters=[OpenApiParameter("ids", str, required=True, description="2 to 10 run ids, comma-separated")],
        responses=s.CompareSerializer,
    )
    @action(detail=False, methods=["get"])
    def compare(self, request):
        """2 to 10 runs side by side: each parameter's values (and which differ) and each metric's last,
        min and max per run (null where a run did not log it). A run you cannot see is a 404."""
        try:
            ids = run_compare.parse_ids(request.query_params.getlist("ids"))
            runs = run_compare.visible_runs(request.user, ids)
        except run_compare.CompareInvalid as exc:
            if exc.status == 404:  # the same answer as for any run one may not see
                raise NotFound() from None
            return error_response(exc.message, {"ids": exc.message}, exc.status)
        comparison = run_compare.compare(runs)
        body = {
            "runs": s.RunSerializer(runs, many=True, context={"request": request}).data,
            "params": comparison.params,
            "metrics": comparison.metrics,
            "differing_params": comparison.differing_params,
        }
        return Response(body)

    @extend_schema(parameters=[s.RunWaitSerializer])
    def retrieve(self, request, *args, **kwargs):
        """A run: status, progress, error, parameters, the first page of its result and its metrics."""
        if request.query_params.get("wait") == "":  # the schema says number: an empty one is malformed
            raise ValidationError({"wait": "Give a number of seconds (at most the server's limit), or leave wait out."})
        query = s.RunWaitSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        run = self._after_waiting(self.get_object(), query.validated_data.get("wait"))
        return Response(self.get_serializer(run).data)

    def _after_waiting(self, run: Run, seconds: float | None) -> Run:
        """`run` re-read once it has finished, waiting at most `seconds`; as it was if it did not finish."""
        if seconds and not run.is_finished and waiting.wait_until_finished(run.pk, seconds):
            return waiting.read_back(run.pk) or run  # None only if it was deleted meanwhile
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
                    model=data.get("model"),
                    version=data.get("version"),
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
        text, next_offset = run_logs.read_from(run.pk, offset)
        response = HttpResponse(text, content_type="text/plain; charset=utf-8")
        response["X-Log-Offset"] = str(next_offset)
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

    @extend_schema(request=s.RunRerunSerializer, responses={201: s.RunDetailSerializer, **_RUN_ERRORS})
    @action(detail=True, methods=["post"])
    def rerun(self, request, pk=None):
        """Queue a new run asking what this one asked (pipeline, kind, version, model, input, params),
        with any of them changed: {"params": {"k": 5}, "model": "production", "version": 2, ...}."""
        run = self.get_object()
        if not isinstance(request.data, dict):  # a JSON array, string or number
            return error_response(
                'Send no body, or a JSON object such as {"wait": 30} or {"params": {"k": 5}}.',
                {"non_field_errors": f"Expected an object, got {type(request.data).__name__}."},
            )
        form = s.RunRerunSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        changes = {
            ("timeout_seconds" if key == "timeout" else key): value
            for key, value in form.validated_data.items()
            if key in ("pipeline", "version", "model", "input", "params", "timeout")
        }
        try:
            new = run_services.rerun(request.user, run, changes)
        except run_services.RunRefused as exc:
            return refusal_response(exc)
        new = self._after_waiting(new, form.validated_data.get("wait"))
        return Response(
            s.RunDetailSerializer(new, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("run-detail", args=[new.pk])},
        )

    def _result_source(self, run: Run) -> results.Source:
        source = results.source_of(run)
        if source is None:
            reason = "it returned no result" if run.status == Run.Status.SUCCEEDED else f"it is {run.status}"
            raise NotFound(f"Run {run.pk} has no result: {reason}.")
        return source

    @extend_schema(
        parameters=[
            OpenApiParameter("page", OpenApiTypes.INT, description="page number, from 1"),
            OpenApiParameter(
                "page_size",
                OpenApiTypes.INT,
                description=f"rows per page (default {settings.MLOPEN_RESULT_PAGE_SIZE}, at most {MAX_PAGE_SIZE})",
            ),
            *_TABLE_QUERY_PARAMETERS,
        ],
        responses=s.ResultPageSerializer,
    )
    @action(detail=True, methods=["get"])
    def result(self, request, pk=None):
        """One page of the run's result table (sorted, filtered), with its graphs and text."""
        run = self.get_object()
        source = self._result_source(run)
        params = request.query_params
        page = positive_int(params["page"], "page") if params.get("page") else 1
        page_size = (
            positive_int(params["page_size"], "page_size", MAX_PAGE_SIZE)
            if params.get("page_size")
            else settings.MLOPEN_RESULT_PAGE_SIZE
        )
        query = _table_query(params)
        # A stored part that cannot be read is null, with why in body["problems"]: still a 200.
        try:
            body = results.page_of(
                source,
                page,
                page_size,
                query.sort,
                query.descending,
                expect_table=run.result_rows is not None,
                filters=query.filters,
                search=query.search,
            )
        except result_queries.QueryInvalid as exc:
            raise ValidationError({exc.parameter: exc.message}) from None
        body["images"] = s.image_links(run, body["images"], request)
        if (
            query.sort is not None
            and body["columns"] is not None
            and body["data"] is not None
            and query.sort >= len(body["columns"])
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
                enum=["csv", "json", "ndjson", "zip"],
                description="csv (default), json, ndjson (one JSON object per row), or zip: the table as CSV "
                "and the result's images",
            ),
            *_TABLE_QUERY_PARAMETERS,
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="the table as CSV"),
            (200, "application/json"): s.ResultRowsSerializer,
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.BINARY, description="one JSON object per row, keyed by column name"
            ),
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="run-ID.csv (if there is a table) and images/<name> for each image"
            ),
        },
    )
    @action(
        detail=True, methods=["get"], renderer_classes=[JSONRenderer], content_negotiation_class=JSONErrorsNegotiation
    )
    def download(self, request, pk=None):
        """The result table (sorted and filtered as asked) streamed as CSV, JSON or NDJSON, or the
        table and the result's images as a zip."""
        run = self.get_object()
        fmt = request.query_params.get("format") or "csv"
        if fmt not in (*results.DOWNLOAD_TYPES, "zip"):
            raise ValidationError({"format": f"Use csv, json, ndjson or zip, not {fmt[:40]!r}."})
        query = _table_query(request.query_params)
        source = self._result_source(run)
        if fmt == "zip":
            return self._archive(run, source)
        if run.result_rows is None:
            raise NotFound(f"Run {run.pk}'s result has no table to download, only graphs or text.")
        # The table is the whole answer here: one that cannot be read is a 422 saying why, never a 500.
        try:
            chunks = results.download(source, fmt, query)  # checks the table and the query now
        except results.ResultUnreadable as exc:
            return error_response(str(exc), status_code=status.HTTP_422_UNPROCESSABLE_ENTITY)
        except result_queries.QueryInvalid as exc:
            raise ValidationError({exc.parameter: exc.message}) from None
        response = StreamingHttpResponse(chunks, content_type=results.DOWNLOAD_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="run-{run.pk}.{fmt}"'
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
        source = self._result_source(run)
        entry = results.image_at(source, int(index))
        if entry is None or not isinstance(source, str):
            raise NotFound(f"Run {run.pk}'s result has no image {index}.")
        try:
            handle = result_images.open_image(source, entry)
        except FileNotFoundError:
            return error_response(f"Image {index} of run {run.pk} is missing from storage.", status_code=404)
        response = FileResponse(
            handle, as_attachment=True, filename=entry["name"], content_type=result_images.content_type(entry)
        )
        response["Content-Security-Policy"] = _IMAGE_CSP
        return response

    def _archive(self, run: Run, source: results.Source):
        """The table (if any) and the images of a result as one zip, built before anything is sent."""
        archive = tempfile.SpooledTemporaryFile(max_size=_ARCHIVE_IN_MEMORY_BYTES)
        try:
            images = results.write_archive(source, archive, f"run-{run.pk}.csv", run.result_rows is not None)
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
