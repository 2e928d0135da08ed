"""The share operation of datasets and runs: GET who sees it, POST or PATCH to change that."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from mlopen.api.errors import error_response
from mlopen.api.parsers import JSONParser
from mlopen.core.sharing import SharingRefused, set_sharing, sharing_of


class SharingSerializer(serializers.Serializer):
    everyone = serializers.BooleanField(help_text="visible to every logged-in user")
    groups = serializers.ListField(child=serializers.CharField(), help_text="names of the groups it is shared with")


class StrictBoolean(serializers.BooleanField):
    """true or false, not 0, "yes" or "on": a typo must not quietly share or unshare (or change a setting)."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)


class StrictString(serializers.CharField):
    """A string and only a string: DRF's CharField would turn 0 or true into "0" or "True"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class SharingChangeSerializer(serializers.Serializer):
    everyone = StrictBoolean(required=False, help_text="true: visible to every logged-in user")
    groups = serializers.ListField(
        child=StrictString(max_length=150),
        required=False,
        max_length=100,
        help_text="replaces the groups it is shared with (names or ids of groups you belong to); [] for none",
    )

    def validate_groups(self, value):
        if any("\x00" in name for name in value):
            raise serializers.ValidationError("Group names cannot contain NUL characters.")
        return value


class ShareMixin:
    """Adds ``/<id>/share/``. Only the owner or an admin may change it (OwnerOrAdminToChange)."""

    @extend_schema(methods=["GET"], request=None, responses=SharingSerializer)
    @extend_schema(methods=["POST", "PATCH"], request=SharingChangeSerializer, responses=SharingSerializer)
    @action(detail=True, methods=["get", "post", "patch"], parser_classes=[JSONParser])
    def share(self, request, pk=None):
        """Who sees it. POST or PATCH {"everyone": bool, "groups": [...]} to change it; a key left
        out stays as it is. {"everyone": false, "groups": []} stops sharing."""
        obj = self.get_object()
        if request.method == "GET":
            return Response(sharing_of(obj))
        if not isinstance(request.data, dict):
            return error_response(
                "Send a JSON object with everyone and/or groups.",
                {"non_field_errors": f"Expected an object, got {type(request.data).__name__}."},
            )
        form = SharingChangeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            state = set_sharing(
                obj,
                request.user,
                everyone=form.validated_data.get("everyone"),
                groups=form.validated_data.get("groups"),
            )
        except SharingRefused as exc:
            return error_response(exc.message, {exc.field: exc.message})
        return Response(state)
