"""What the API says about runtimes: a version's runtime, a run's recorded environment, and the
build a queued run waits for (mlopen.pipelines.runtimes)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mlopen.pipelines import runtimes
from mlopen.runs.models import Run


class RuntimeRefSerializer(serializers.Serializer):
    name = serializers.CharField()
    digest = serializers.CharField(help_text="sha256 of the lock the version runs on")
    status = serializers.CharField(help_text="building, ready or failed")


class EnvironmentSerializer(serializers.Serializer):
    runtime = serializers.CharField()
    digest = serializers.CharField(help_text="sha256 of the runtime's lock")
    python = serializers.CharField(help_text="the interpreter's version, e.g. 3.11.7")
    packages = serializers.DictField(child=serializers.CharField(), help_text="{name: version} installed")


class BuildProgressSerializer(serializers.Serializer):
    fraction = serializers.FloatField(allow_null=True, help_text="0 to 1")
    message = serializers.CharField(allow_null=True)


class WaitingForSerializer(serializers.Serializer):
    runtime = serializers.CharField()
    status = serializers.CharField(help_text="building or failed")
    progress = BuildProgressSerializer(allow_null=True)


def runtime_name_field() -> serializers.CharField:
    """The upload's ``runtime``: a known runtime's name (400 naming the known ones otherwise)."""
    return serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="the runtime (locked package set) it runs on; empty: the platform's default (MLOPEN_DEFAULT_RUNTIME)",
    )


class RunEnvironmentFields(serializers.Serializer):
    """A run's ``environment`` (what it ran on, recorded when it started; null before) and
    ``waiting_for`` (the runtime build a queued run waits for; null otherwise)."""

    environment = serializers.SerializerMethodField()
    waiting_for = serializers.SerializerMethodField()

    @extend_schema_field(EnvironmentSerializer(allow_null=True))
    def get_environment(self, run) -> dict | None:
        return run.environment or None

    @extend_schema_field(WaitingForSerializer(allow_null=True))
    def get_waiting_for(self, run) -> dict | None:
        return waiting_for(run)


def runtime_of(version) -> dict | None:
    runtime = version.runtime
    return None if runtime is None else {"name": runtime.name, "digest": runtime.digest, "status": runtime.build_status}


def waiting_for(run: Run) -> dict | None:
    """A queued run whose runtime is not built yet: that runtime and its build's progress."""
    if run.status != Run.Status.QUEUED:
        return None
    runtime = runtimes.waiting_on(run.version)
    if runtime is None:
        return None
    progress = None
    if runtime.progress_fraction is not None or runtime.progress_message:
        progress = {"fraction": runtime.progress_fraction, "message": runtime.progress_message or None}
    return {"runtime": runtime.name, "status": runtime.build_status, "progress": progress}
