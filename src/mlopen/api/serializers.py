"""What the API sends and accepts. Serializers only shape data; domain services decide."""

from __future__ import annotations

import copy
import math

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mlopen.api import runtime_serializers as rs
from mlopen.api.sharing import StrictBoolean, StrictString
from mlopen.core.clients import site_url
from mlopen.datasets.models import Dataset
from mlopen.notifications.models import EVENTS as WEBHOOK_EVENTS
from mlopen.notifications.models import MAX_URL_LENGTH as MAX_WEBHOOK_URL
from mlopen.notifications.models import Webhook, WebhookDelivery
from mlopen.pipelines.models import Pipeline, PipelineVersion, TrainedModel
from mlopen.pipelines.params import spec_as_dict
from mlopen.runs import labels, results
from mlopen.runs import metrics as run_metrics
from mlopen.runs import search as run_search
from mlopen.runs.models import Run


class RunUsageSerializer(serializers.Serializer):
    """A user's runs at once and their limits (runs.fairness); a limit of 0 means none."""

    running = serializers.IntegerField()
    queued = serializers.IntegerField()
    max_running = serializers.IntegerField(source="limits.max_running")
    max_queued = serializers.IntegerField(source="limits.max_queued")


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField(allow_blank=True)
    first_name = serializers.CharField(allow_blank=True)
    last_name = serializers.CharField(allow_blank=True)
    role = serializers.ChoiceField(choices=["admin", "author", "user"])
    is_admin = serializers.BooleanField()
    can_upload_pipelines = serializers.BooleanField()
    runs = RunUsageSerializer(help_text="runs running and queued now, and this user's limits on them")


def _finite(value):
    """JSON has no NaN or infinity; a pipeline may still log them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class TrainedModelSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number", read_only=True)
    run = serializers.IntegerField(source="run_id", read_only=True, allow_null=True)

    class Meta:
        model = TrainedModel
        fields = ["id", "number", "version", "run", "label", "model_names", "arg_names", "size", "created_at"]


class PipelineVersionSerializer(serializers.ModelSerializer):
    params = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField()
    runtime = serializers.SerializerMethodField()

    class Meta:
        model = PipelineVersion
        fields = [
            "id",
            "number",
            "control_filename",
            "files",
            "description",
            "params",
            "requirements",
            "runtime",
            "env_status",
            "env_log",
            "created_at",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_params(self, version) -> dict:
        return {"train": spec_as_dict(version.params_train), "run": spec_as_dict(version.params_run)}

    def get_files(self, version) -> list[str]:
        return [version.control_filename, *version.support_files]

    @extend_schema_field(rs.RuntimeRefSerializer(allow_null=True))
    def get_runtime(self, version) -> dict | None:
        return rs.runtime_of(version)


class PipelineSerializer(serializers.ModelSerializer):
    version = serializers.SerializerMethodField()
    params = serializers.SerializerMethodField()
    current_model = serializers.SerializerMethodField()

    class Meta:
        model = Pipeline
        fields = [
            "id",
            "name",
            "description",
            "version",
            "params",
            "current_model",
            "timeout_seconds",
            "memory_mb",
            "queue",
            "allow_network",
            "input_required",
            "retention_days",
            "created_at",
            "updated_at",
        ]

    def _latest(self, pipeline):
        # The API's querysets prefetch versions and models newest first; fall back to a query.
        prefetched = getattr(pipeline, "_prefetched_objects_cache", {})
        if "versions" in prefetched:
            versions = list(prefetched["versions"])
            return versions[0] if versions else None
        return pipeline.latest_version

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
        prefetched = getattr(pipeline, "_prefetched_objects_cache", {})
        if "trained_models" in prefetched:
            models = list(prefetched["trained_models"])
            model = models[0] if models else None
        else:
            model = pipeline.current_model
        return TrainedModelSerializer(model).data if model else None


class PipelineDetailSerializer(PipelineSerializer):
    owner = serializers.CharField(
        source="created_by.username",
        read_only=True,
        allow_null=True,
        help_text="who created it; null once that account is deleted",
    )
    maintainers = serializers.SlugRelatedField(
        many=True,
        read_only=True,
        slug_field="username",
        help_text="usernames of those who may publish versions besides the owner and admins",
    )
    versions = PipelineVersionSerializer(many=True, read_only=True)
    trained_models = TrainedModelSerializer(many=True, read_only=True)

    class Meta(PipelineSerializer.Meta):
        fields = [*PipelineSerializer.Meta.fields, "owner", "maintainers", "versions", "trained_models"]


class PipelineUpdateSerializer(serializers.Serializer):
    """What the API changes on a pipeline: its maintainers (the owner or an admin only), and whether its
    runs need an input (those who may publish it)."""

    maintainers = serializers.ListField(
        child=serializers.CharField(max_length=150),
        max_length=50,
        required=False,
        help_text="usernames of authors who may publish new versions besides the owner; replaces the list",
    )
    input_required = StrictBoolean(  # JSON: true or false, not 0 or "yes"
        required=False, help_text="its runs must be given an input dataset (a run without one is refused)"
    )

    retention_days = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=3650,
        help_text="days its finished runs are kept; null: the platform's MLOPEN_RETENTION_DAYS; 0: forever",
    )

    def to_internal_value(self, data):
        values = super().to_internal_value(data)
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {
                    name[:100]: "This operation changes maintainers, input_required and retention_days only."
                    for name in unknown[:10]
                }
            )
        if not values:
            raise serializers.ValidationError(
                {"maintainers": "Send maintainers, input_required, retention_days, or several."}
            )
        return values


class PipelineUploadSerializer(serializers.Serializer):
    control = serializers.FileField(help_text="the control file (.py) with train and run_pipeline")
    support_files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),
        required=False,
        default=list,
        help_text=(
            "files placed beside the control file; repeat the field. Each keeps the path sent as its "
            "multipart filename (filename=\"textnet/model.py\"): no '..', absolute path, backslash or hidden name"
        ),
    )
    support_zip = serializers.FileField(
        required=False, help_text="a zip of support files, unpacked beside the control file with their paths"
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    requirements = serializers.FileField(required=False, help_text="a requirements.txt for its own environment")
    runtime = rs.runtime_name_field()
    input_required = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="whether its runs must be given an input dataset; left out: unchanged (a new pipeline: no)",
    )


class PipelineVersionUploadSerializer(serializers.Serializer):
    """A new version of an existing pipeline: the same form without the name."""

    control = serializers.FileField(help_text="the control file (.py) with train and run_pipeline")
    support_files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),
        required=False,
        default=list,
        help_text=(
            "files placed beside the control file; repeat the field. Each keeps the path sent as its "
            "multipart filename (filename=\"textnet/model.py\"): no '..', absolute path, backslash or hidden name"
        ),
    )
    support_zip = serializers.FileField(
        required=False, help_text="a zip of support files, unpacked beside the control file with their paths"
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    requirements = serializers.FileField(required=False, help_text="a requirements.txt for its own environment")
    runtime = rs.runtime_name_field()
    input_required = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="whether its runs must be given an input dataset; left out: unchanged (a new pipeline: no)",
    )


class DatasetSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = Dataset
        fields = ["id", "name", "filename", "size", "content_type", "kind", "sha256", "owner", "created_at"]


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)


class DatasetPreviewSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["table", "text", "none"])
    columns = serializers.ListField(child=serializers.CharField(allow_blank=True), required=False)
    rows = serializers.ListField(child=serializers.ListField(child=serializers.JSONField()), required=False)
    lines = serializers.ListField(child=serializers.CharField(allow_blank=True), required=False)
    message = serializers.CharField(required=False)
    note = serializers.CharField(required=False, allow_blank=True)


@extend_schema_field({"oneOf": [{"type": "number"}, {"type": "string"}], "nullable": True})
class NumberOrTextField(serializers.JSONField):
    """A column's minimum or maximum: a number for a number column, text for a text column."""


class DatasetColumnStatsSerializer(serializers.Serializer):
    name = serializers.CharField(allow_blank=True)
    type = serializers.ChoiceField(choices=["integer", "number", "boolean", "text"])
    missing = serializers.IntegerField(help_text="empty cells")
    distinct = serializers.IntegerField(help_text="distinct values, empty cells not counted")
    min = NumberOrTextField(allow_null=True)
    max = NumberOrTextField(allow_null=True)
    mean = serializers.FloatField(allow_null=True, help_text="for a boolean column, the share of true values")


class DatasetStatsSerializer(serializers.Serializer):
    rows = serializers.IntegerField(help_text="the file's rows; an estimate when complete is false")
    rows_exact = serializers.BooleanField()
    sampled_rows = serializers.IntegerField(help_text="the rows the statistics were computed from")
    complete = serializers.BooleanField(help_text="false: computed from the file's first 8 MB (50 000 rows)")
    columns = DatasetColumnStatsSerializer(many=True)


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}], "description": "the pipeline's id or name"})
class PipelineRefField(serializers.JSONField):
    """A pipeline's id (a number, or digits as text) or its name; the run service resolves it."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise serializers.ValidationError("Give the pipeline's id (a number) or its name (text).")
        if isinstance(value, str) and (len(value) > 200 or "\x00" in value):
            raise serializers.ValidationError("Not a pipeline name.")
        return value


class ModelRefField(serializers.JSONField):
    """A model's id (a number, or digits as text) or an alias; the run service resolves it."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise serializers.ValidationError("Give the model's id (a number) or an alias (text).")
        if isinstance(value, str) and (len(value) > 64 or "\x00" in value):
            raise serializers.ValidationError("Not a model id or alias (aliases are at most 64 characters).")
        return value


def _has_nul(value) -> bool:
    """PostgreSQL cannot store NUL in text or jsonb; refuse it as a 400 rather than fail with a 500."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


# The longest "wait" a request may ask for, as the schema says it (the wait itself is capped by the
# setting at the time of the request).
MAX_WAIT_SECONDS = settings.MLOPEN_MAX_WAIT_SECONDS


class SecondsField(serializers.FloatField):
    """A finite number of seconds. DRF's FloatField would take true and false as 1 and 0, and NaN."""

    default_error_messages = {
        "invalid": "Give a number of seconds.",
        "max_value": "Give a number of seconds from 0 to {max_value}.",
        "min_value": "Give a number of seconds from {min_value} on.",
    }

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        seconds = super().to_internal_value(data)
        if not math.isfinite(seconds):
            self.fail("invalid")
        return seconds


def _wait_field() -> serializers.FloatField:
    return SecondsField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=MAX_WAIT_SECONDS,
        help_text="seconds to hold the response until the run has finished, so it carries the status and "
        "the result's first page (0 or absent: answer at once). If the run is still queued or "
        "running when the wait is over, the response says so; wait for it with GET ?wait=.",
    )


class RunCreateSerializer(serializers.Serializer):
    pipeline = PipelineRefField(help_text="the pipeline's id or name")
    kind = serializers.ChoiceField(choices=Run.Kind.choices, default=Run.Kind.RUN)
    input = serializers.IntegerField(required=False, allow_null=True, help_text="a dataset id, or null")
    params = serializers.DictField(
        required=False, default=dict, help_text="parameter name → value; text is converted to the parameter's type"
    )

    def validate_params(self, value: dict) -> dict:
        if _has_nul(value):
            raise serializers.ValidationError("Parameter names and values cannot contain NUL characters.")
        return value

    timeout = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="seconds; capped by the pipeline's own limit"
    )
    model = ModelRefField(
        required=False,
        allow_null=True,
        help_text="runs only: a model of the pipeline by id, or an alias such as 'production'; "
        "empty: the production alias's model, else the newest",
    )
    version = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="the pipeline version's number; empty: the latest"
    )
    wait = _wait_field()


class RunRerunSerializer(serializers.Serializer):
    """A rerun's body: `wait`, and any of the run's choices to change (the rest are the old run's)."""

    pipeline = PipelineRefField(required=False, help_text="another pipeline (its defaults, not the old run's)")
    version = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    model = ModelRefField(required=False, allow_null=True)
    input = serializers.IntegerField(required=False, allow_null=True, help_text="a dataset id, or null")
    params = serializers.DictField(required=False, help_text="values to change; the others are the old run's")
    timeout = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    wait = _wait_field()

    def validate_params(self, value: dict) -> dict:
        if _has_nul(value):
            raise serializers.ValidationError("Parameter names and values cannot contain NUL characters.")
        return value


class RunWaitSerializer(serializers.Serializer):
    """`wait` alone: the body of a rerun, the query of a run's GET."""

    wait = _wait_field()


class RunFilterSerializer(serializers.Serializer):
    """The run list's query parameters (documentation: mlopen.runs.search parses them, and a malformed
    one is a 400 naming it)."""

    q = serializers.CharField(
        required=False, allow_blank=True, help_text="text in the run's name, notes, pipeline name or input name"
    )
    tag = serializers.CharField(
        required=False, allow_blank=True, help_text="runs with this tag (comma-separate or repeat: all of them)"
    )
    pipeline = serializers.CharField(required=False, allow_blank=True, help_text="a pipeline's id or name")
    version = serializers.CharField(required=False, allow_blank=True, help_text="the pipeline version's number, e.g. 3")
    kind = serializers.ChoiceField(choices=Run.Kind.choices, required=False, allow_blank=True)
    status = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="one status, or several separated by commas: " + ", ".join(Run.Status.values),
    )
    user = serializers.CharField(required=False, allow_blank=True, help_text="the owner's username")
    created_after = serializers.CharField(
        required=False, allow_blank=True, help_text="ISO date or date-time; runs created from then on"
    )
    created_before = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="ISO date (that whole day included) or date-time; runs created before it",
    )
    ordering = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="created, duration or metric.NAME (the run's last value of that metric); a leading - for "
        "descending. Default -created. A metric no run you can see logged is a 400.",
    )
    columns = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="comma-separated param.NAME and metric.NAME: each run's `columns` then holds those "
        "parameters and the last value of those metrics",
    )


class RunLabelsSerializer(serializers.Serializer):
    """The fields of a run its owner may change; any other field is a 400."""

    name = StrictString(required=False, allow_blank=True, trim_whitespace=False, max_length=200)
    notes = StrictString(required=False, allow_blank=True, trim_whitespace=False, max_length=20_000)
    tags = serializers.ListField(child=StrictString(trim_whitespace=False, allow_blank=True), required=False)

    def validate(self, attrs):
        extra = sorted(set(self.initial_data) - set(self.fields)) if isinstance(self.initial_data, dict) else []
        if extra:
            raise serializers.ValidationError({extra[0]: "Only name, notes and tags can be changed."})
        return attrs


class RunIdsSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), min_length=1, max_length=500
    )


class DeletedSerializer(serializers.Serializer):
    deleted = serializers.IntegerField(help_text="how many runs were deleted")


class CompareMetricSerializer(serializers.Serializer):
    last = serializers.FloatField(allow_null=True)
    min = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)


class ProgressSerializer(serializers.Serializer):
    fraction = serializers.FloatField(allow_null=True, help_text="0 to 1, or null when only a message was given")
    message = serializers.CharField(allow_null=True)


class ResultImageSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="the image's file name, e.g. graph-1.png")
    url = serializers.CharField(help_text="downloads the image (image/png, image/jpeg or image/svg+xml)")


def image_links(run, stored: list, request=None) -> list[dict]:
    """A result's stored images as {"name", "url"}; one that cannot be read is left out (see "problems")."""
    links = []
    for index, entry in enumerate(stored):
        if entry is None:
            continue
        url = reverse("run-image", args=[run.pk, index])
        links.append({"name": entry["name"], "url": site_url(url) if request else url})
    return links


class ResultSummarySerializer(serializers.Serializer):
    """The first page of a run's result, as included in a run's detail."""

    columns = serializers.ListField(child=serializers.CharField(allow_blank=True), allow_null=True)
    data = serializers.ListField(child=serializers.ListField(child=serializers.JSONField()), allow_null=True)
    rows = serializers.IntegerField(allow_null=True, help_text="rows in the whole table; null if there is no table")
    graphs = serializers.ListField(child=serializers.JSONField(), help_text="null for a graph that cannot be read")
    images = ResultImageSerializer(
        many=True,
        help_text="images the pipeline returned (matplotlib figures, PIL images, image bytes and files), each "
        "with the URL that downloads it",
    )
    text = serializers.CharField(allow_null=True, allow_blank=True)
    page_size = serializers.IntegerField()
    warnings = serializers.ListField(child=serializers.CharField())
    problems = serializers.DictField(
        child=serializers.CharField(),
        help_text='the parts of the stored result that cannot be shown ("result", "table", "text", "warnings", '
        '"graphs", "graphs.N", "images", "images.N", "sort"), each with why; those parts are null (an image is '
        "left out). {} when all is well",
    )


class ResultPageSerializer(ResultSummarySerializer):
    page = serializers.IntegerField()
    pages = serializers.IntegerField(help_text="0 when the result has no table")


class ResultRowsSerializer(serializers.Serializer):
    columns = serializers.ListField(child=serializers.CharField(allow_blank=True), allow_null=True)
    data = serializers.ListField(child=serializers.ListField(child=serializers.JSONField()))


class FieldsBuiltOnce:
    """For a ModelSerializer: build its fields from the model once per class, not per instance.

    DRF rebuilds a ModelSerializer's fields from the model's metadata for every instance (about a
    millisecond for a run, on every run's detail). They depend only on the class, so the first
    instance's are kept, unbound, and each instance gets its own copies, as DRF itself gives each
    instance copies of the declared fields.

    A plain field's only per-instance state is what ``bind`` sets on it (its name, parent, source),
    so a shallow copy is its own; DRF's deep copy builds each field again from its arguments (0.25
    of the 1.3 ms a run's detail took). A field holding other fields (a nested serializer, a list,
    a dict, a many-relation) binds them to itself, so it is deep-copied as DRF does.
    """

    def get_fields(self):
        cls = type(self)
        built = cls.__dict__.get("_fields_built_once")
        if built is None:
            built = super().get_fields()
            cls._fields_built_once = built
        return {name: _own_copy(field) for name, field in built.items()}


def _own_copy(field: serializers.Field) -> serializers.Field:
    holds_fields = isinstance(field, serializers.BaseSerializer) or any(
        hasattr(field, attribute) for attribute in ("child", "child_relation", "fields")
    )
    return copy.deepcopy(field) if holds_fields else copy.copy(field)


class RunSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    pipeline_name = serializers.CharField(source="pipeline.name", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)
    input = serializers.IntegerField(source="input_id", read_only=True, allow_null=True)
    trained_model = serializers.IntegerField(source="trained_model_id", read_only=True, allow_null=True)
    progress = serializers.SerializerMethodField()
    duration = serializers.SerializerMethodField()
    display_name = serializers.CharField(read_only=True, help_text='its name, or "<pipeline> #<id>"')
    tags = serializers.SerializerMethodField()
    columns = serializers.SerializerMethodField(
        help_text="the parameters and metrics (last value) asked for with ?columns= on the list; else empty"
    )

    class Meta:
        model = Run
        fields = [
            "id",
            "name",
            "display_name",
            "notes",
            "tags",
            "columns",
            "status",
            "kind",
            "pipeline",
            "pipeline_name",
            "version",
            "owner",
            "input",
            "input_name",
            "params",
            "trained_model",
            "model_alias",
            "model_requested",
            "version_requested",
            "warnings",
            "timeout_seconds",
            "queue",
            "attempt",
            "worker",
            "sandbox",
            "retry_of",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "duration",
            "error",
            "progress",
            "result_rows",
        ]

    @extend_schema_field(ProgressSerializer(allow_null=True))
    def get_progress(self, run) -> dict | None:
        progress = run.progress
        if progress is not None:
            progress["fraction"] = _finite(progress["fraction"])
        return progress

    def get_duration(self, run) -> float | None:
        return run.duration_seconds

    def get_tags(self, run) -> list[str]:
        return labels.tag_names(run)

    @extend_schema_field({"type": "object", "additionalProperties": {}})
    def get_columns(self, run) -> dict:
        search = self.context.get("search")
        if search is None or not search.columns:
            return {}
        values = run_search.column_values(run, search)
        return {key: _finite(value) if isinstance(value, float) else value for key, value in values.items()}


class CompareSerializer(serializers.Serializer):
    runs = RunSerializer(many=True)
    params = serializers.DictField(child=serializers.ListField(child=serializers.JSONField(allow_null=True)))
    metrics = serializers.DictField(child=serializers.ListField(child=CompareMetricSerializer(allow_null=True)))
    differing_params = serializers.ListField(child=serializers.CharField())


class RunDetailSerializer(RunSerializer, rs.RunEnvironmentFields):
    result = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "result", "metrics", "environment", "waiting_for"]

    @extend_schema_field(ResultSummarySerializer(allow_null=True))
    def get_result(self, run) -> dict | None:
        source = results.source_of(run)
        if source is None:
            return None
        page = results.page_of(source, 1, settings.MLOPEN_RESULT_PAGE_SIZE, expect_table=run.result_rows is not None)
        summary = {
            key: page[key] for key in ("columns", "data", "rows", "graphs", "text", "page_size", "warnings", "problems")
        }
        summary["images"] = image_links(run, page["images"], self.context.get("request"))
        return summary

    @extend_schema_field(
        {
            "type": "object",
            "additionalProperties": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "step": {"type": "integer", "nullable": True},
                        "value": {"type": "number", "nullable": True},
                    },
                },
            },
        }
    )
    def get_metrics(self, run) -> dict:
        series: dict[str, list] = {}
        if run.started_at is None:  # a run logs metrics only once started: no query for a queued one
            return series
        for name, step, value in run_metrics.points_of(run.pk):
            series.setdefault(name, []).append({"step": step, "value": _finite(value)})
        return series


class WebhookSerializer(serializers.ModelSerializer):
    """A webhook as its owner sees it; the secret is shown once, in the answer that created it."""

    pipeline_name = serializers.CharField(source="pipeline.name", read_only=True, default=None)

    class Meta:
        model = Webhook
        fields = ["id", "url", "events", "pipeline", "pipeline_name", "active", "failing", "created_at"]
        read_only_fields = fields


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="signs each call: X-Mlopen-Signature is sha256=<hex HMAC-SHA256 of the body>"
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookCreateSerializer(serializers.Serializer):
    url = serializers.CharField(
        max_length=MAX_WEBHOOK_URL, help_text="an http(s) URL of at most 2 KB, on a public address"
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=list(WEBHOOK_EVENTS)),
        allow_empty=False,
        max_length=len(WEBHOOK_EVENTS),
        help_text="which endings of a run call it",
    )
    pipeline = PipelineRefField(required=False, allow_null=True, help_text="only this pipeline's runs (id or name)")


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ["id", "event", "run", "state", "status_code", "attempts", "error", "created_at", "delivered_at"]
        read_only_fields = fields
