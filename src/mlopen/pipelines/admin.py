from django.contrib import admin

from mlopen.pipelines.models import ModelAlias, ModelAliasChange, Pipeline, PipelineVersion, Runtime, TrainedModel


class VersionInline(admin.TabularInline):
    model = PipelineVersion
    fields = ["number", "control_filename", "env_status", "created_by", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "created_by",
        "queue",
        "timeout_seconds",
        "memory_mb",
        "allow_network",
        "private_group",
        "retention_days",
        "updated_at",
    ]
    search_fields = ["name", "description"]
    # Its owner (created_by), its maintainers and admins publish its versions: mlopen.pipelines.rules.
    filter_horizontal = ["maintainers"]
    inlines = [VersionInline]


@admin.register(PipelineVersion)
class PipelineVersionAdmin(admin.ModelAdmin):
    list_display = ["pipeline", "number", "control_filename", "env_status", "created_at"]
    list_filter = ["env_status"]
    readonly_fields = [
        "pipeline",
        "number",
        "control_filename",
        "support_files",
        "folder",
        "params_train",
        "params_run",
        "requirements",
        "runtime",
        "env_hash",
        "env_log",
        "created_by",
        "created_at",
    ]


@admin.register(TrainedModel)
class TrainedModelAdmin(admin.ModelAdmin):
    list_display = ["pipeline", "number", "version", "run", "label", "size", "created_at"]
    readonly_fields = [
        "pipeline",
        "number",
        "version",
        "run",
        "artifact",
        "label",
        "model_names",
        "arg_names",
        "size",
        "input_name",
        "input_sha256",
        "input_schema",
        "train_params",
        "metrics",
        "environment",
    ]


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    # Moved on the model's page or with the API (mlopen.pipelines.registry), which records each move.
    list_display = ["pipeline", "name", "model", "set_by", "set_at"]
    readonly_fields = ["pipeline", "name", "model", "set_by", "set_at"]


@admin.register(ModelAliasChange)
class ModelAliasChangeAdmin(admin.ModelAdmin):
    list_display = ["pipeline", "name", "from_model", "to_model", "changed_by", "changed_at"]
    readonly_fields = ["pipeline", "name", "from_model", "to_model", "changed_by", "changed_at"]


@admin.register(Runtime)
class RuntimeAdmin(admin.ModelAdmin):
    # A lock is what versions were created with: it is read here, never edited (a new lock is a new row).
    list_display = ["name", "digest", "build_status", "progress_message", "created_at"]
    list_filter = ["name", "build_status"]
    readonly_fields = ["name", "digest", "lock", "build_status", "progress_fraction", "progress_message", "build_log"]
