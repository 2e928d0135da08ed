"""The model registry over REST: a pipeline's trained models, their aliases, lineage and download.

``GET .../models/<model_id>/`` is readable by whoever sees the pipeline (its training's details
only by those mlopen.runs.lineage allows); ``PATCH`` moves aliases (its owner, maintainers,
admins); ``download/`` hands the stored objects to its owner, maintainers and admins, and is the
same 404 as for a model that does not exist to anyone else.
"""

from __future__ import annotations

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from mlopen.api import registry_serializers as rs
from mlopen.api.errors import error_response
from mlopen.api.parsers import JSONParser
from mlopen.api.views import ApiView, JSONErrorsNegotiation
from mlopen.core import storage
from mlopen.pipelines import registry
from mlopen.pipelines import rules as pipeline_rules
from mlopen.pipelines.control import PipelineForbidden, PipelineRejected
from mlopen.pipelines.models import Pipeline, TrainedModel
from mlopen.runs import lineage

_PATH = [
    OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="the pipeline's id"),
    OpenApiParameter("model_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="the model's id"),
]


def _model(request, pk: int, model_id: int) -> TrainedModel:
    pipeline = get_object_or_404(Pipeline.objects.visible_to(request.user), pk=pk)
    return get_object_or_404(
        TrainedModel.objects.select_related("pipeline", "version", "run", "run__owner").prefetch_related("aliases"),
        pipeline=pipeline,
        pk=model_id,
    )


class ModelDetailView(ApiView, GenericAPIView):
    parser_classes = [JSONParser]
    serializer_class = rs.ModelDetailSerializer

    @extend_schema(operation_id="pipelines_models_retrieve", parameters=_PATH, responses=rs.ModelDetailSerializer)
    def get(self, request, pk: int, model_id: int):
        """A trained model: its version, aliases, size, how it was trained (input and its SHA-256,
        parameters, metrics, packages) and how many of the runs you can see used it."""
        return Response(self._body(request, _model(request, pk, model_id)))

    @extend_schema(
        operation_id="pipelines_models_partial_update",
        parameters=_PATH,
        request=rs.ModelUpdateSerializer,
        responses=rs.ModelDetailSerializer,
    )
    def patch(self, request, pk: int, model_id: int):
        """Make exactly these the model's aliases: {"aliases": ["production"]} moves production here
        from whichever model had it (its owner, a maintainer or an admin)."""
        model = _model(request, pk, model_id)
        form = rs.ModelUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        if "aliases" in form.validated_data:
            try:
                registry.set_aliases(request.user, model, form.validated_data["aliases"])
            except PipelineForbidden as exc:
                return error_response(exc.message, status_code=status.HTTP_403_FORBIDDEN)
            except PipelineRejected as exc:
                return error_response(exc.message, {exc.field: exc.message})
        return Response(self._body(request, _model(request, pk, model_id)))

    def _body(self, request, model: TrainedModel) -> dict:
        return rs.ModelDetailSerializer(model, context={"request": request}).data


class ModelRunsView(ApiView, GenericAPIView):
    serializer_class = rs.ModelRunSerializer

    @extend_schema(
        operation_id="pipelines_models_runs_list", parameters=_PATH, responses=rs.ModelRunSerializer(many=True)
    )
    def get(self, request, pk: int, model_id: int):
        """The runs you can see that used this model, newest first."""
        model = _model(request, pk, model_id)
        page = self.paginate_queryset(lineage.runs_using(request.user, model))
        return self.get_paginated_response(rs.ModelRunSerializer(page, many=True).data)


class ModelDownloadView(ApiView, GenericAPIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONErrorsNegotiation

    @extend_schema(
        operation_id="pipelines_models_download_retrieve",
        parameters=_PATH,
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="the pickled models and args the training saved (load with pickle, with the "
                "pipeline's code importable)",
            )
        },
    )
    def get(self, request, pk: int, model_id: int):
        """The model's stored objects, for use outside mlopen (its owner, maintainers and admins)."""
        model = _model(request, pk, model_id)
        if not pipeline_rules.can_download_models(request.user, model.pipeline):
            raise NotFound()
        if not storage.exists(model.artifact):
            return error_response(f"The stored objects of model {model.pk} are missing from storage.", status_code=404)
        return storage_download(model)


def storage_download(model: TrainedModel):
    """The artifact streamed as an attachment with a name that says what it is."""
    name = storage.safe_filename(f"{model.pipeline.name}-model-{model.number}.pkl", fallback="model.pkl")
    return FileResponse(
        storage.open_stored(model.artifact), as_attachment=True, filename=name, content_type="application/octet-stream"
    )
