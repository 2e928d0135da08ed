from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from mlopen.datasets.models import Dataset, StorageQuota
from mlopen.datasets.services import storage_usage


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "kind", "size", "shared_with_all", "created_at"]
    list_filter = ["kind", "shared_with_all"]
    search_fields = ["name", "filename", "owner__username"]
    readonly_fields = ["file", "size", "sha256", "created_at"]
    filter_horizontal = ["shared_groups"]


@admin.register(StorageQuota)
class StorageQuotaAdmin(admin.ModelAdmin):
    """Per-user quotas; users without one get MLOPEN_USER_QUOTA_MB."""

    list_display = ["user", "megabytes", "used"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]

    @admin.display(description="used now")
    def used(self, quota: StorageQuota) -> str:
        return filesizeformat(storage_usage(quota.user).used)
