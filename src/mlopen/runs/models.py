"""Runs (one train or run of a pipeline), the metrics they log, and the workers that execute them.

The Run row is the record of a job: the web pages and API read it, workers write it. Celery
only carries "please execute run N"; nothing about a run's state lives in the queue.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce, Length
from django.utils import timezone


class RunQuerySet(models.QuerySet):
    def visible_to(self, user) -> RunQuerySet:
        """What ``user`` may see: their own runs and those shared with them, with everyone or with
        one of their groups (admins see all)."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self
        shared_with_a_group = Run.shared_groups.through.objects.filter(group__in=user.groups.all()).values("run_id")
        return self.filter(models.Q(owner=user) | models.Q(shared_with_all=True) | models.Q(pk__in=shared_with_a_group))

    def manageable_by(self, user) -> RunQuerySet:
        """What ``user`` may change (cancel, share): their own runs; admins all."""
        if not user.is_authenticated:
            return self.none()
        return self if user.is_superuser else self.filter(owner=user)


NAME_MAX = 200


class Run(models.Model):
    class Kind(models.TextChoices):
        TRAIN = "train", "train"
        RUN = "run", "run"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    pipeline = models.ForeignKey("pipelines.Pipeline", on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey("pipelines.PipelineVersion", on_delete=models.PROTECT, related_name="runs")
    kind = models.CharField(max_length=5, choices=Kind.choices)
    # What the owner calls it and notes about it (markdown, shown sanitized); an empty name shows
    # as "<pipeline> #<id>" (display_name). Tags are RunTag rows (run.tags).
    name = models.CharField(max_length=NAME_MAX, blank=True)
    notes = models.TextField(blank=True)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.QUEUED, db_index=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="runs")
    input = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    input_name = models.CharField(max_length=200, blank=True, help_text="kept if the dataset is deleted")
    params = models.JSONField(default=dict, blank=True)
    trained_model = models.ForeignKey(
        "pipelines.TrainedModel",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="used_by_runs",
        help_text="the model a run was given",
    )
    # What the run asked for (kept so "Run again" asks the same): a model by id or alias, a version
    # by number; empty: the pipeline's production alias (else its newest model), its latest version.
    model_requested = models.CharField(max_length=64, blank=True)
    version_requested = models.PositiveIntegerField(null=True, blank=True)
    model_alias = models.CharField(
        max_length=64, blank=True, help_text="the alias its model was chosen through; empty: by id, or the newest"
    )
    # Where its input does not look like its model's training data (mlopen.datasets.schemas.compare):
    # [{kind, column, message}]. Shown, never a refusal: the run still runs.
    warnings = models.JSONField(default=list, blank=True)
    timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    queue = models.CharField(max_length=64, blank=True)
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    attempt = models.PositiveIntegerField(default=0, help_text="how many times a worker claimed it")
    # Set when the row is created, as its message is sent on commit (no second write per run); a
    # worker's sweep sets it again when it re-sends a lost message (sweep.requeue_lost_runs).
    enqueued_at = models.DateTimeField(
        null=True,
        blank=True,
        default=timezone.now,
        help_text="when its last message was sent; empty: it could not be sent",
    )

    worker = models.CharField(max_length=200, blank=True)
    sandbox = models.CharField(
        max_length=20,
        blank=True,
        help_text="where its pipeline code ran: bubblewrap, or none (with the worker's own "
        "access to its host); empty until a worker takes it",
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)

    error = models.TextField(null=True, blank=True)
    # The log is not here: it grows in RunLogChunk rows (runs/logs.py), so that reading a run (a
    # list of 50, a count, a detail) never reads megabytes of output.
    progress_fraction = models.FloatField(null=True, blank=True)
    progress_message = models.CharField(max_length=500, blank=True)

    result_folder = models.CharField(max_length=300, blank=True, help_text="storage folder of the result")
    # A small result (MLOPEN_RESULT_IN_DATABASE_KB, no images) is a RunResult row instead of files:
    # written in the run's final transaction, no files to create, upload or delete.
    result_in_database = models.BooleanField(default=False, db_default=False)
    result_rows = models.PositiveIntegerField(null=True, blank=True)
    peak_memory_mb = models.FloatField(null=True, blank=True)
    # What the run's interpreter held, read from its environment when the run started:
    # {"runtime", "digest", "python", "packages": {name: version}}; empty until then.
    environment = models.JSONField(default=dict, blank=True)

    # Sharing gives read access (page, logs, results, downloads); a colleague may re-run a shared
    # run as their own new run only when they can also see its input. Only the owner and admins
    # may cancel it or change its sharing.
    shared_with_all = models.BooleanField(default=False, help_text="visible to every logged-in user")
    shared_groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="+", help_text="visible to the members of these groups"
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # One per filter combination the run lists offer (pipeline, status, owner: each newest
        # first), so a filtered page is an index range read, however many runs there are.
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["status", "created_at", "id"], name="run_status_created"),
            models.Index(fields=["pipeline", "created_at", "id"], name="run_pipeline_created"),
            models.Index(fields=["pipeline", "status", "created_at", "id"], name="run_pipeline_status_created"),
            models.Index(fields=["owner", "created_at", "id"], name="run_owner_created"),
            models.Index(fields=["owner", "status", "created_at", "id"], name="run_owner_status_created"),
            # The fair claim (runs.fairness): when each user was last served.
            models.Index(fields=["owner", "started_at"]),
            # The fair claim: each user with a run waiting on a queue, one seek each
            # (fairness._turns_sql). Partial, so it holds only waiting runs.
            models.Index(fields=["queue", "owner"], condition=models.Q(status="queued"), name="run_waiting_owner"),
            # How many of a user's runs wait before one (its queue position), from the index alone.
            # Owner first: led by (queue, owner), PostgreSQL's claim took it instead of the one above
            # to find the next user, and each seek there read the previous user's entries (20 ms).
            models.Index(
                fields=["owner", "queue", "created_at", "id"],
                condition=models.Q(status="queued"),
                name="run_waiting_owner_created",
            ),
            # A waiting run without its message (asked after every run), or one due again (asked on
            # every beat): from this index alone, not every waiting run's row (runs.sweep).
            models.Index(
                fields=["enqueued_at", "created_at"], condition=models.Q(status="queued"), name="run_waiting_enqueued"
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.kind} {self.pipeline_id})"

    @property
    def display_name(self) -> str:
        """Its name, or "<pipeline> #<id>" for a run nobody named (the id is the one in its URL)."""
        return self.name or f"{self.pipeline.name} #{self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        return max(0.0, (end - self.started_at).total_seconds())

    @property
    def log(self) -> str:
        """The whole log, read from its chunks: one query, for tests, the admin and the CLI-sized
        logs; pages and the API read it by offset (runs.logs.read_from, runs.logs.tail)."""
        if self._state.adding:
            return getattr(self, "_unsaved_log", "")
        return "".join(self.log_chunks.order_by("seq").values_list("text", flat=True))

    @log.setter
    def log(self, text: str) -> None:
        """Only for a run being created (``Run.objects.create(..., log=...)``, fixtures): written as
        its first chunk by save(). A running run's log grows through runs.lifecycle only."""
        if not self._state.adding:
            raise AttributeError("a stored run's log only grows, through runs.lifecycle")
        self._unsaved_log = text

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        text = self.__dict__.pop("_unsaved_log", "")
        if text:
            RunLogChunk.objects.create(run=self, seq=0, offset=0, text=text)

    @property
    def progress(self) -> dict | None:
        if self.progress_fraction is None and not self.progress_message:
            return None
        return {"fraction": self.progress_fraction, "message": self.progress_message or None}


class RunResult(models.Model):
    """A small run result kept in the database (runs.results decides which): the bytes its files
    would hold, result.json's text and table.parquet's bytes, read as untrusted as those files are.

    Its own table, not columns of Run: lists and counts of runs never read result bytes.
    """

    run = models.OneToOneField(Run, on_delete=models.CASCADE, primary_key=True, related_name="stored_result")
    meta = models.TextField(help_text="result.json: columns, text, graphs, warnings")
    table = models.BinaryField(null=True, help_text="table.parquet; empty when the result has no table")

    def __str__(self) -> str:
        return f"result of run {self.run_id}"

    @staticmethod
    def stored_bytes(through: str = "") -> models.Expression:
        """Its bytes (JSON and table) as a query expression; ``through``: the path to it from the
        queried model ("stored_result__" from Run)."""
        return Coalesce(Length(f"{through}meta"), 0) + Coalesce(Length(f"{through}table"), 0)


class RunLogChunk(models.Model):
    """A piece of a run's log, as one flush of its worker wrote it: append-only, in order of ``seq``.

    ``offset`` is how many characters of the log come before it, so a reader that has seen N
    characters asks for the chunks from the one holding character N on (runs.logs.read_from).
    Rows, not files: a chunk is written in the same transaction as the run's heartbeat or outcome,
    so the log and the status never disagree, on any storage and any database.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="log_chunks")
    seq = models.PositiveIntegerField()
    offset = models.PositiveBigIntegerField()
    text = models.TextField()

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="one_log_chunk_per_seq")]
        indexes = [models.Index(fields=["run", "offset"], name="log_chunk_by_offset")]

    def __str__(self) -> str:
        return f"run {self.run_id} log chunk {self.seq}"


class RunMetric(models.Model):
    """A value a pipeline logged with io.log_metric (loss per epoch, accuracy, ...)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metrics")
    name = models.CharField(max_length=100)
    step = models.IntegerField(null=True, blank=True)
    value = models.FloatField(null=True, blank=True, help_text="empty when the pipeline sent NaN or infinity")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "name", "step", "id"]
        # A run's last value of one metric (the runs list's metric columns and ordering).
        indexes = [models.Index(fields=["run", "name", "step"], name="runmetric_run_name_step")]


class RunTag(models.Model):
    """A short label on a run ("baseline", "lr-sweep"); the runs list filters by them."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=64, db_index=True)

    class Meta:
        ordering = ["run", "name"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="unique_run_tag")]

    def __str__(self) -> str:
        return self.name


class Worker(models.Model):
    """A live (or recently live) `mlopen worker` process; it heartbeats while it lives."""

    name = models.CharField(max_length=200, unique=True)
    hostname = models.CharField(max_length=200, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    queues = models.JSONField(default=list, blank=True)
    sandbox = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(db_index=True)
    current_run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    idle_since = models.DateTimeField(
        null=True, blank=True, help_text="since when it has had nothing to do; empty while it runs or builds"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RunLimits(models.Model):
    """A user's own limits on runs at once, set by an admin; users without a row (or a field left
    empty) get MLOPEN_USER_MAX_RUNNING and MLOPEN_USER_MAX_QUEUED. 0 means no limit."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="run_limits")
    max_running = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="runs running at once; empty: MLOPEN_USER_MAX_RUNNING; 0: no limit",
    )
    max_queued = models.PositiveIntegerField(
        null=True, blank=True, help_text="runs waiting at once; empty: MLOPEN_USER_MAX_QUEUED; 0: no limit"
    )

    objects: ClassVar[models.Manager[RunLimits]] = (
        models.Manager()
    )  # named: mypy's Django plugin may load the models of another checkout

    class Meta:
        verbose_name = "run limits"
        verbose_name_plural = "run limits"

    def __str__(self) -> str:
        return f"{self.user}: {self.max_running} running, {self.max_queued} queued"


class PipelineExample(models.Model):
    """A dataset a pipeline's author offers to try it with ("Try it with the example"), per kind.

    Here, not in pipelines: it ties a pipeline to a dataset, and only runs knows both.
    """

    pipeline = models.ForeignKey("pipelines.Pipeline", on_delete=models.CASCADE, related_name="examples")
    kind = models.CharField(max_length=5, choices=Run.Kind.choices)
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+")
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pipeline", "kind"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "kind"], name="one_example_per_kind")]

    def __str__(self) -> str:
        return f"{self.pipeline} {self.kind} example: {self.dataset}"
