"""/api/v1/me/notifications/: what one is told when one's runs end (e-mail, browser), by default
and per pipeline. Each user reads and changes only their own preferences."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from mlopen.api.errors import error_response
from mlopen.api.parsers import JSONParser
from mlopen.api.serializers import PipelineRefField
from mlopen.api.views import ApiView
from mlopen.notifications import preferences
from mlopen.notifications.models import DEFAULT_BROWSER, DEFAULT_EMAIL, NotificationPreference

CHOICE_HELP = "off, all (every finished run) or failures (failed runs only)"


class PreferenceSerializer(serializers.Serializer):
    pipeline = serializers.IntegerField(allow_null=True, help_text="empty: the default for every pipeline")
    pipeline_name = serializers.CharField(allow_null=True)
    email = serializers.ChoiceField(choices=preferences.CHOICES, help_text=CHOICE_HELP)
    browser = serializers.ChoiceField(choices=preferences.CHOICES, help_text=CHOICE_HELP)


class PreferencesSerializer(serializers.Serializer):
    email_address = serializers.CharField(help_text="where e-mail goes (the account's address; empty: none is sent)")
    default = PreferenceSerializer()
    pipelines = PreferenceSerializer(many=True, help_text="overrides for one pipeline each; they win over the default")


class PreferenceChangeSerializer(serializers.Serializer):
    pipeline = PipelineRefField(
        required=False, allow_null=True, help_text="a pipeline's id or name; empty: the default"
    )
    email = serializers.ChoiceField(choices=preferences.CHOICES, required=False, help_text=CHOICE_HELP)
    browser = serializers.ChoiceField(choices=preferences.CHOICES, required=False, help_text=CHOICE_HELP)


def _row(row: NotificationPreference | None) -> dict:
    if row is None:
        return {"pipeline": None, "pipeline_name": None, "email": DEFAULT_EMAIL, "browser": DEFAULT_BROWSER}
    return {
        "pipeline": row.pipeline_id,
        "pipeline_name": row.pipeline.name if row.pipeline else None,
        "email": row.email,
        "browser": row.browser,
    }


def _described(user) -> dict:
    rows = preferences.preferences_of(user)
    default = next((row for row in rows if row.pipeline_id is None), None)
    return {
        "email_address": user.email or "",
        "default": _row(default),
        "pipelines": [_row(row) for row in rows if row.pipeline_id is not None],
    }


class NotificationPreferencesView(ApiView, APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=PreferencesSerializer, operation_id="me_notifications_retrieve")
    def get(self, request):
        return Response(PreferencesSerializer(_described(request.user)).data)

    @extend_schema(
        request=PreferenceChangeSerializer, responses=PreferencesSerializer, operation_id="me_notifications_update"
    )
    def put(self, request):
        """Set the default (no pipeline) or one pipeline's override; a channel left out keeps its value."""
        form = PreferenceChangeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            preferences.set_preference(
                request.user, pipeline=data.get("pipeline"), email=data.get("email"), browser=data.get("browser")
            )
        except preferences.PreferenceRejected as exc:
            return error_response(exc.message, {exc.field: exc.message})
        return Response(PreferencesSerializer(_described(request.user)).data)


class NotificationOverrideView(ApiView, APIView):
    @extend_schema(responses={204: None}, operation_id="me_notifications_pipeline_destroy")
    def delete(self, request, pipeline_id: int):
        """Forget one pipeline's override: its runs follow the default again."""
        if not preferences.delete_preference(request.user, pipeline_id):
            raise NotFound()  # the same answer as for any object one may not touch
        return Response(status=204)
