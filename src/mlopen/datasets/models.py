"""Files users upload to run pipelines on."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class DatasetQuerySet(models.QuerySet):
    def visible_to(self, user) -> DatasetQuerySet:
        """What ``user`` may see and use: their own datasets, those shared with them (with everyone
        or with one of their groups) and the demo ones. Admins see all."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self
        shared_with_a_group = Dataset.shared_groups.through.objects.filter(group__in=user.groups.all()).values(
            "dataset_id"
        )
        # Demo datasets are there for everyone to try the demo pipelines on.
        return self.filter(
            models.Q(owner=user)
            | models.Q(is_demo=True)
            | models.Q(shared_with_all=True)
            | models.Q(pk__in=shared_with_a_group)
        )

    def manageable_by(self, user) -> DatasetQuerySet:
        """What ``user`` may change (share, delete): their own datasets; admins all."""
        if not user.is_authenticated:
            return self.none()
        return self if user.is_superuser else self.filter(owner=user)


class Dataset(models.Model):
    class Kind(models.TextChoices):
        CSV = "csv", "CSV table"
        TEXT = "text", "text"
        ZIP = "zip", "zip archive"
        OTHER = "other", "file"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    filename = models.CharField(max_length=255, help_text="the uploaded file's name, sanitized")
    file = models.CharField(max_length=400, help_text="storage name of the stored file")
    size = models.BigIntegerField(default=0)
    content_type = models.CharField(max_length=120, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.OTHER)
    sha256 = models.CharField(max_length=64, blank=True)
    # Its table's columns and types, read once from its start (mlopen.datasets.schemas); {} when it is
    # not a table it can read, empty until first asked.
    table_schema = models.JSONField(null=True, blank=True)
    is_demo = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Sharing gives read access (view, preview, download, use as a run's input); only the owner
    # and admins may share, stop sharing or delete.
    shared_with_all = models.BooleanField(default=False, help_text="visible to every logged-in user")
    shared_groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="+", help_text="visible to the members of these groups"
    )

    objects = DatasetQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class StorageQuota(models.Model):
    """How much a user may store as datasets; users without a row get MLOPEN_USER_QUOTA_MB."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="storage_quota")
    megabytes = models.PositiveIntegerField(help_text="the most this user's datasets may take, in MB; 0 = no limit")

    class Meta:
        verbose_name = "storage quota"

    def __str__(self) -> str:
        return f"{self.user} ({self.megabytes} MB)" if self.megabytes else f"{self.user} (no limit)"
