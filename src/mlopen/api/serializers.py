"""What the API sends and accepts. Serializers only shape data; domain services decide."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mlopen.datasets.models import Dataset
from mlopen.pipelines.models import Pipeline, PipelineVersion, TrainedModel
from mlopen.pipelines.params import spec_as_dict
from mlopen.runs import results
from mlopen.runs.models import Run


class TrainedModelSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number", read_only=True)
    run = serializers.IntegerField(source="run_id", read_only=True, allow_null=True)

    class Meta:
        model = TrainedModel
        fields = ["id", "number", "version", "run", "label", "model_names", "arg_names", "size", "created_at"]


class PipelineVersionSerializer(serializers.ModelSerializer):
    params = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField()

    class Meta:
        model = PipelineVersion
        fields = ["id", "number", "control_filename", "files", "description", "params", "requirements",
                  "env_status", "created_at"]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_params(self, version) -> dict:
        return {"train": spec_as_dict(version.params_train), "run": spec_as_dict(version.params_run)}

    def get_files(self, version) -> list[str]:
        return [version.control_filename, *version.support_files]


class PipelineSerializer(serializers.ModelSerializer):
    version = serializers.SerializerMethodField()
    params = serializers.SerializerMethodField()
    current_model = serializers.SerializerMethodField()

    class Meta:
        model = Pipeline
        fields = ["id", "name", "description", "version", "params", "current_model", "timeout_seconds",
                  "memory_mb", "queue", "allow_network", "created_at", "updated_at"]

    def _latest(self, pipeline):
        cache = self.context.setdefault("_latest", {})
        if pipeline.pk not in cache:
            cache[pipeline.pk] = pipeline.latest_version
        return cache[pipeline.pk]

    def get_version(self, pipeline) -> int | None:
        latest = self._latest(pipeline)
        return latest.number if latest else None

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_params(self, pipeline) -> dict:
        latest = self._latest(pipeline)
        if latest is None:
            return {"train": {}, "run": {}}
        return {"train": spec_as_dict(latest.params_train), "run": spec_as_dict(latest.params_run)}

    @extend_schema_field(TrainedModelSerializer(allow_null=True))
    def get_current_model(self, pipeline):
        model = pipeline.current_model
        return TrainedModelSerializer(model).data if model else None


class PipelineDetailSerializer(PipelineSerializer):
    versions = PipelineVersionSerializer(many=True, read_only=True)
    trained_models = TrainedModelSerializer(many=True, read_only=True)

    class Meta(PipelineSerializer.Meta):
        fields = [*PipelineSerializer.Meta.fields, "versions", "trained_models"]


class PipelineUploadSerializer(serializers.Serializer):
    control = serializers.FileField(help_text="the control file (.py) with train and run_pipeline")
    support_files = serializers.ListField(child=serializers.FileField(), required=False, default=list,
                                          help_text="files placed beside the control file; repeat the field")
    name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    requirements = serializers.FileField(required=False, help_text="a requirements.txt for its own environment")


class DatasetSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = Dataset
        fields = ["id", "name", "filename", "size", "content_type", "kind", "sha256", "owner", "created_at"]


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)


class RunCreateSerializer(serializers.Serializer):
    pipeline = serializers.JSONField(help_text="the pipeline's id or name")
    kind = serializers.ChoiceField(choices=Run.Kind.choices, default=Run.Kind.RUN)
    input = serializers.IntegerField(required=False, allow_null=True, help_text="a dataset id, or null")
    params = serializers.DictField(required=False, default=dict)
    timeout = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                       help_text="seconds; capped by the pipeline's own limit")


class RunSerializer(serializers.ModelSerializer):
    pipeline_name = serializers.CharField(source="pipeline.name", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)
    input = serializers.IntegerField(source="input_id", read_only=True, allow_null=True)
    trained_model = serializers.IntegerField(source="trained_model_id", read_only=True, allow_null=True)
    progress = serializers.SerializerMethodField()
    duration = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = ["id", "status", "kind", "pipeline", "pipeline_name", "version", "owner", "input", "input_name",
                  "params", "trained_model", "timeout_seconds", "queue", "attempt", "worker", "retry_of",
                  "created_at", "started_at", "finished_at", "heartbeat_at", "duration", "error", "progress",
                  "result_rows"]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_progress(self, run) -> dict | None:
        return run.progress

    def get_duration(self, run) -> float | None:
        return run.duration_seconds


class RunDetailSerializer(RunSerializer):
    result = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "result", "metrics"]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_result(self, run) -> dict | None:
        if run.status != Run.Status.SUCCEEDED or not run.result_folder:
            return None
        page = results.page_of(run.result_folder, 1, settings.MLOPEN_RESULT_PAGE_SIZE)
        return {key: page[key] for key in ("columns", "data", "rows", "graphs", "text", "page_size", "warnings")}

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_metrics(self, run) -> dict:
        series: dict[str, list] = {}
        for metric in run.metrics.all():
            series.setdefault(metric.name, []).append({"step": metric.step, "value": metric.value})
        return series
