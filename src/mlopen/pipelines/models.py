"""Pipelines, their uploaded versions, and the models their training runs produced."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from mlopen.core import prepared


class PipelineQuerySet(models.QuerySet):
    def visible_to(self, user) -> PipelineQuerySet:
        """Pipelines are visible to every logged-in user, except those their author made private
        to a group: those only to its members, their author, its maintainers and admins."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(
            models.Q(private_group__isnull=True) | models.Q(private_group__in=user.groups.all()) | self._kept_by(user)
        )

    def manageable_by(self, user) -> PipelineQuerySet:
        """Pipelines ``user`` may publish versions of and change: the ones they created or maintain
        (admins: all). The rule as a whole, role included, is mlopen.pipelines.rules."""
        if not user.is_authenticated:
            return self.none()
        return self if user.is_superuser else self.filter(self._kept_by(user))

    @staticmethod
    def _kept_by(user) -> models.Q:
        # A subquery, not a join: OR-ing a join on maintainers would repeat a pipeline once per maintainer.
        maintained = Pipeline.maintainers.through.objects.filter(user=user).values("pipeline_id")
        return models.Q(created_by=user) | models.Q(pk__in=maintained)


class Pipeline(models.Model):
    """A named pipeline. Uploading a control file under an existing name adds a version."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Limits and routing set by the pipeline's author; empty means the platform default.
    timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    memory_mb = models.PositiveIntegerField(null=True, blank=True)
    queue = models.CharField(
        max_length=64, blank=True, help_text="Celery queue its runs go to (e.g. gpu); empty for the default queue"
    )
    allow_network = models.BooleanField(default=False)
    # Set by its author: a run (or training) without an input dataset is refused with a 400 and the
    # form's Start stays disabled until one is chosen. Off by default: older pipelines ran without one.
    input_required = models.BooleanField(
        default=False, help_text="its runs and trainings must be given an input dataset"
    )
    # Its runs' retention (mlopen.runs.retention): empty follows MLOPEN_RETENTION_DAYS, 0 keeps them forever.
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="finished runs older than this many days are deleted; empty: the platform's "
        "MLOPEN_RETENTION_DAYS; 0: kept forever",
    )
    is_demo = models.BooleanField(default=False)
    # PROTECT: deleting the group must not quietly make a private pipeline public.
    private_group = models.ForeignKey(
        "auth.Group",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="only this group's members (and admins) see the pipeline; empty: every logged-in user",
    )
    # Who may publish versions and change settings besides its creator (and admins); the creator names them.
    maintainers = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="maintained_pipelines",
        help_text="besides its creator (and admins), who may publish new versions and change its settings",
    )

    objects = PipelineQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def latest_version(self) -> PipelineVersion | None:
        version = _LATEST_VERSION.first(pipeline_id=self.pk)
        if version is not None:
            version.pipeline = self  # as self.versions would have set it: no query to read it back
        return version

    @property
    def current_model(self) -> TrainedModel | None:
        return self.trained_models.order_by("-number").first()


class Runtime(models.Model):
    """One lock of a named runtime, addressed by its digest: the package set pipeline versions run on.

    The lock text is kept here, so a version created with an older lock (before mlopen shipped a
    newer one under the same name) can still be built on a new worker host. Its venv on a host is
    MLOPEN_HOME/runtimes/<digest>; ``build_status`` is the state of the build the platform asked for (a
    host that finds the venv missing builds it before its next run: uv's cache makes that quick).
    """

    class Status(models.TextChoices):
        BUILDING = "building", "building"
        READY = "ready", "ready"
        FAILED = "failed", "failed"

    digest = models.CharField(max_length=64, unique=True, help_text="sha256 of the Python version and the lock")
    name = models.CharField(max_length=64)
    lock = models.TextField(help_text="the locked requirements (uv pip compile --generate-hashes)")
    build_status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILDING)
    progress_fraction = models.FloatField(null=True, blank=True)
    progress_message = models.CharField(max_length=200, blank=True)
    build_log = models.TextField(blank=True)
    requested_at = models.DateTimeField(
        null=True, blank=True, help_text="when its build message was last sent; empty: it could not be"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.digest[:12]})"


class PipelineVersion(models.Model):
    """One upload of a pipeline's control file and support files. Never changed once stored."""

    class EnvStatus(models.TextChoices):
        NONE = "none", "runtime only"
        BUILDING = "building", "building"
        READY = "ready", "ready"
        FAILED = "failed", "failed"

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    control_filename = models.CharField(max_length=200)
    support_files = models.JSONField(default=list, blank=True)
    folder = models.CharField(max_length=300, help_text="storage folder holding the control and support files")
    description = models.TextField(blank=True)
    params_train = models.JSONField(default=dict, blank=True)
    params_run = models.JSONField(default=dict, blank=True)
    requirements = models.TextField(blank=True)
    # Whether its train saves a model (its code calls save_pipeline), read from its sources at upload:
    # only then does a run without a trained model mean "train it first". Empty: not known (older rows).
    saves_model = models.BooleanField(null=True, blank=True)
    # PROTECT: the lock a version was created with stays as long as the version does. Empty only for
    # rows made outside an upload (they run on the current default runtime).
    runtime = models.ForeignKey(Runtime, null=True, blank=True, on_delete=models.PROTECT, related_name="versions")
    env_hash = models.CharField(max_length=64, blank=True)
    env_status = models.CharField(max_length=10, choices=EnvStatus.choices, default=EnvStatus.NONE)
    env_log = models.TextField(blank=True)
    env_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="when its build message was last sent; empty: it could not be"
    )
    env_heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="last sign of life of a worker building it"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pipeline", "-number"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "number"], name="unique_pipeline_version")]

    def __str__(self) -> str:
        return f"{self.pipeline.name} v{self.number}"

    @property
    def control_storage_name(self) -> str:
        return f"{self.folder}/{self.control_filename}"

    @property
    def is_usable(self) -> bool:
        return self.env_status in (self.EnvStatus.NONE, self.EnvStatus.READY)

    def params_for(self, kind: str) -> list[dict]:  # the form's fields ({} until it is read)
        return self.params_train if kind == "train" else self.params_run


class TrainedModel(models.Model):
    """What one training run saved with io.save_pipeline; the newest is the pipeline's current model."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="trained_models")
    version = models.ForeignKey(PipelineVersion, on_delete=models.PROTECT, related_name="trained_models")
    run = models.OneToOneField(
        "runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="produced_model"
    )
    number = models.PositiveIntegerField()
    artifact = models.CharField(max_length=300, help_text="storage name of the pickled models and args")
    label = models.CharField(max_length=200, blank=True, help_text="the name passed to save_pipeline")
    model_names = models.JSONField(default=list, blank=True)
    arg_names = models.JSONField(default=list, blank=True)
    size = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # What it was trained from, copied from its training run when it was stored: the run (and its
    # input dataset) may be deleted later, the model's record of where it came from stays.
    input_name = models.CharField(max_length=200, blank=True, help_text="the training input's dataset name")
    input_sha256 = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the training input's content")
    input_schema = models.JSONField(
        null=True,
        blank=True,
        help_text="the training input's table: {columns: [{name, type}], rows, rows_estimated}; "
        "empty when it was not a table",
    )
    train_params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="each metric's last value in its training run")
    environment = models.JSONField(default=dict, blank=True, help_text="the training run's runtime and packages")

    class Meta:
        ordering = ["pipeline", "-number"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "number"], name="unique_trained_model")]

    def __str__(self) -> str:
        return f"{self.pipeline.name} model #{self.number}"


class ModelAlias(models.Model):
    """A name (``production``, ``staging``...) that points to one of a pipeline's models at a time.

    A run that names no model uses the ``production`` alias's model (else the newest); moving an
    alias back to an earlier model is a rollback. Every move is kept as a ModelAliasChange.
    """

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="model_aliases")
    name = models.SlugField(max_length=64)
    model = models.ForeignKey(TrainedModel, on_delete=models.CASCADE, related_name="aliases")
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    set_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pipeline", "name"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "name"], name="unique_model_alias")]

    def __str__(self) -> str:
        return f"{self.pipeline_id}:{self.name} -> model {self.model_id}"


class ModelAliasChange(models.Model):
    """One move of an alias: from which model to which (either empty: set for the first time, removed)."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="model_alias_changes")
    name = models.SlugField(max_length=64)
    from_model = models.ForeignKey(TrainedModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    to_model = models.ForeignKey(TrainedModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name}: {self.from_model_id} -> {self.to_model_id}"


# Every run that names no version asks (Pipeline.latest_version): compiled once (mlopen.core.prepared).
_LATEST_VERSION = prepared.Compiled(
    lambda pipeline_id: PipelineVersion.objects.filter(pipeline_id=pipeline_id).order_by("-number")[:1],
    pipeline_id=-2_000_000_123,
)
