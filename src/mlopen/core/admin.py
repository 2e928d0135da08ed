"""Admin: API tokens without their values, and the user forms with mlopen's username rules."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import ValidationError

from mlopen.core import tokens, usernames
from mlopen.core.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    # The digest is not shown either: it identifies a token, and nobody needs to read it.
    list_display = ["name", "user", "prefix", "state", "created_at", "expires_at", "last_used_at", "revoked_reason"]
    list_filter = ["revoked_at", "expires_at"]
    search_fields = ["name", "user__username", "prefix"]
    fields = ["user", "name", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at", "revoked_reason"]
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # a token is made by its owner (account page, API, `mlopen user token`), shown once

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            tokens.revoke(token, f"revoked by {request.user.get_username()} in the admin")


class _CleanUsername:
    def clean_username(self):
        pk = self.instance.pk if self.instance else None
        try:
            return usernames.clean_new_username(self.cleaned_data.get("username"), exclude_pk=pk)
        except ValidationError as exc:
            raise ValidationError(exc.messages, code="username") from None


class UserCreation(_CleanUsername, AdminUserCreationForm):
    pass


class UserChange(_CleanUsername, UserChangeForm):
    pass


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class MlopenUserAdmin(UserAdmin):
    add_form = UserCreation
    form = UserChange
