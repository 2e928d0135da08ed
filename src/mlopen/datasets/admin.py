from django.contrib import admin

from mlopen.datasets.models import Dataset


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "kind", "size", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "filename", "owner__username"]
    readonly_fields = ["file", "size", "sha256", "created_at"]
