"""/api/v1/me/tokens/: one's own API tokens. Listed without their value, shown once when created or
rotated, revoked with DELETE. Another user's token is a 404, admins included.

Creating one also accepts HTTP Basic (username and password, throttled by django-axes like the login
page), so `mlopen login --username` can get a token without a browser.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.decorators import action
from rest_framework.response import Response

from mlopen.api.authentication import HashedTokenAuthentication
from mlopen.api.errors import error_response
from mlopen.api.parsers import JSONParser
from mlopen.api.views import ApiView
from mlopen.core import tokens
from mlopen.core.models import ApiToken


class TokenSerializer(serializers.ModelSerializer):
    state = serializers.ChoiceField(choices=["active", "revoked", "expired"], read_only=True)
    current = serializers.SerializerMethodField(help_text="true for the token this request was made with")

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "state",
            "current",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "revoked_reason",
        ]
        read_only_fields = fields

    def get_current(self, token) -> bool:
        auth = self.context.get("auth")
        return isinstance(auth, ApiToken) and auth.pk == token.pk


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.SerializerMethodField(help_text="the token itself: shown in this answer only")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]
        read_only_fields = fields

    def get_token(self, token) -> str:
        return self.context["raw"]


class _Text(serializers.CharField):
    """Text only: DRF's CharField would take 5 or true and store "5" or "True"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be text.")
        return super().to_internal_value(data)


class _WholeNumber(serializers.IntegerField):
    """A JSON number only: DRF's IntegerField would take "30" and true."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            raise serializers.ValidationError("Must be a whole number.")
        return super().to_internal_value(data)


class TokenCreateSerializer(serializers.Serializer):
    name = _Text(max_length=tokens.MAX_NAME_LENGTH)
    expires_in_days = _WholeNumber(
        required=False, allow_null=True, min_value=1, max_value=tokens.MAX_LIFETIME_DAYS, help_text="empty: never"
    )


class TokenViewSet(ApiView, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """One's own API tokens (their values are never listed)."""

    authentication_classes = [HashedTokenAuthentication, SessionAuthentication, BasicAuthentication]
    parser_classes = [JSONParser]
    serializer_class = TokenSerializer
    queryset = ApiToken.objects.none()  # for the schema; get_queryset is what serves

    def get_queryset(self):
        return tokens.tokens_of(self.request.user)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "auth": self.request.auth}

    def _created(self, token: ApiToken, raw: str) -> Response:
        data = TokenCreatedSerializer(token, context={"raw": raw, "auth": self.request.auth}).data
        location = reverse("token-detail", args=[token.pk])
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": location})

    @extend_schema(request=TokenCreateSerializer, responses={201: TokenCreatedSerializer})
    def create(self, request):
        """A new token; its value is in this answer only."""
        form = TokenCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            token, raw = tokens.create_token(
                request.user,
                form.validated_data["name"],
                expires_at=tokens.expiry_in(form.validated_data.get("expires_in_days")),
            )
        except tokens.TokenRequestInvalid as exc:
            return error_response(str(exc), {exc.field: str(exc)})
        return self._created(token, raw)

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request, pk=None):
        """Revoke the token: it stops working at once (it stays listed, as revoked)."""
        tokens.revoke(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={201: TokenCreatedSerializer})
    @action(detail=True, methods=["post"])
    def rotate(self, request, pk=None):
        """Replace the token with a new one of the same name and lifetime; the old one stops working."""
        try:
            token, raw = tokens.rotate(self.get_object())
        except tokens.TokenRequestInvalid as exc:
            return error_response(str(exc), {exc.field: str(exc)})
        return self._created(token, raw)
