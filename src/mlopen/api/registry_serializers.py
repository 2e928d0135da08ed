"""What the model registry's API sends and accepts (mlopen.api.registry)."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mlopen.pipelines import registry
from mlopen.pipelines import rules as pipeline_rules
from mlopen.pipelines.models import TrainedModel
from mlopen.runs import lineage
from mlopen.runs.models import Run


class ModelSummarySerializer(serializers.ModelSerializer):
    """A model in a list: what it is, its aliases, where it came from."""

    version = serializers.IntegerField(source="version.number", read_only=True)
    run = serializers.IntegerField(source="run_id", read_only=True, allow_null=True)
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = TrainedModel
        fields = [
            "id",
            "number",
            "version",
            "run",
            "aliases",
            "label",
            "model_names",
            "arg_names",
            "size",
            "created_at",
            "input_sha256",
        ]
        read_only_fields = fields

    def get_aliases(self, model) -> list[str]:
        return registry.aliases_of(model)


class TrainingSerializer(serializers.Serializer):
    run = serializers.IntegerField(allow_null=True, help_text="the training run; null once it was deleted")
    owner = serializers.CharField(allow_null=True)
    input_name = serializers.CharField(allow_blank=True)
    input_sha256 = serializers.CharField(allow_blank=True)
    input_schema = serializers.JSONField(allow_null=True, help_text="{columns: [{name, type}], rows, rows_estimated}")
    params = serializers.JSONField()
    metrics = serializers.JSONField(help_text="each metric's last value")
    environment = serializers.JSONField(help_text="{runtime, digest, python, packages: {name: version}}")


class AliasChangeSerializer(serializers.Serializer):
    name = serializers.CharField()
    from_model = serializers.IntegerField(allow_null=True)
    to_model = serializers.IntegerField(allow_null=True)
    changed_by = serializers.CharField(allow_null=True)
    changed_at = serializers.DateTimeField()


class ModelDetailSerializer(ModelSummarySerializer):
    pipeline = serializers.IntegerField(source="pipeline_id", read_only=True)
    pipeline_name = serializers.CharField(source="pipeline.name", read_only=True)
    training = serializers.SerializerMethodField()
    used_by = serializers.SerializerMethodField()
    alias_history = serializers.SerializerMethodField()
    download = serializers.SerializerMethodField()

    class Meta(ModelSummarySerializer.Meta):
        fields = [
            *ModelSummarySerializer.Meta.fields,
            "pipeline",
            "pipeline_name",
            "training",
            "used_by",
            "alias_history",
            "download",
        ]
        read_only_fields = fields

    def _user(self):
        return self.context["request"].user

    @extend_schema_field(TrainingSerializer(allow_null=True))
    def get_training(self, model) -> dict | None:
        """How it was trained; null for a user who may not see its training run."""
        if not lineage.can_see_training(self._user(), model):
            return None
        return {
            "run": model.run_id,
            "owner": model.run.owner.get_username() if model.run is not None else None,
            "input_name": model.input_name,
            "input_sha256": model.input_sha256,
            "input_schema": model.input_schema,
            "params": model.train_params,
            "metrics": model.metrics,
            "environment": model.environment,
        }

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_used_by(self, model) -> dict:
        """How many of the runs the user may see used it, and where to list them."""
        runs = lineage.runs_using(self._user(), model)
        url = reverse("pipeline-model-runs", args=[model.pipeline_id, model.pk])
        return {"count": runs.count(), "url": self.context["request"].build_absolute_uri(url)}

    @extend_schema_field(AliasChangeSerializer(many=True))
    def get_alias_history(self, model) -> list[dict]:
        """The pipeline's latest alias moves that involve this model, newest first."""
        changes = [c for c in registry.history(model.pipeline) if model.pk in (c.from_model_id, c.to_model_id)]
        return [
            {
                "name": change.name,
                "from_model": change.from_model_id,
                "to_model": change.to_model_id,
                "changed_by": change.changed_by.get_username() if change.changed_by else None,
                "changed_at": change.changed_at,
            }
            for change in changes
        ]

    def get_download(self, model) -> str | None:
        """The URL of its stored objects, for those who may download them; else null."""
        if not pipeline_rules.can_download_models(self._user(), model.pipeline):
            return None
        url = reverse("pipeline-model-download", args=[model.pipeline_id, model.pk])
        return self.context["request"].build_absolute_uri(url)


class ModelUpdateSerializer(serializers.Serializer):
    aliases = serializers.JSONField(
        required=False,
        help_text='exactly the aliases the model should have, such as ["production"]: each a slug '
        "(letters, digits, - and _), at most 64 characters; each is moved here from the model that had it",
    )


class ModelRunSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)

    class Meta:
        model = Run
        fields = ["id", "status", "owner", "version", "input_name", "model_alias", "created_at", "finished_at"]
        read_only_fields = fields
