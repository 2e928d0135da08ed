"""Files users upload to run pipelines on."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class DatasetQuerySet(models.QuerySet):
    def visible_to(self, user) -> DatasetQuerySet:
        """What ``user`` may see and use: their own datasets (admins see all)."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self
        # Demo datasets are there for everyone to try the demo pipelines on.
        return self.filter(models.Q(owner=user) | models.Q(is_demo=True))


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
    is_demo = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DatasetQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name
