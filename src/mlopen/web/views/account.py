"""The account page (/account/): one's API tokens (created, rotated, revoked; a new one shown once)
and the password, with the option to revoke every token when it changes."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from mlopen.core import tokens
from mlopen.core.access import LOGGED_IN, access
from mlopen.core.roles import role_of
from mlopen.web.forms import PasswordChangeWithTokensForm, TokenCreateForm


def _tokens_context(request, token_form=None, new_token: str = "", new_name: str = "") -> dict:
    return {
        "tokens": list(tokens.tokens_of(request.user)),
        "token_form": token_form or TokenCreateForm(),
        "new_token": new_token,
        "new_name": new_name,
        "max_tokens": tokens.MAX_ACTIVE_TOKENS,
        "base_url": settings.MLOPEN_BASE_URL,
    }


def _render(request, status: int = 200, password_form=None, **token_context):
    """The tokens card alone for htmx, else the whole page (a new token must be shown, not redirected away)."""
    context = _tokens_context(request, **token_context)
    if request.headers.get("HX-Request") == "true":
        return render(request, "web/account/_tokens.html", context, status=status)
    context.update(
        password_form=password_form or PasswordChangeWithTokensForm(request.user),
        role=role_of(request.user),
    )
    return render(request, "web/account/account.html", context, status=status)


def _own_token(request, pk: int):
    return get_object_or_404(tokens.tokens_of(request.user), pk=pk)


@access(LOGGED_IN)
def account(request):
    return _render(request)


@access(LOGGED_IN)
@require_POST
def token_create(request):
    form = TokenCreateForm(request.POST)
    if not form.is_valid():
        return _render(request, status=400, token_form=form)
    try:
        token, raw = tokens.create_token(
            request.user, form.cleaned_data["name"], expires_at=tokens.expiry_in(form.cleaned_data["expires_in_days"])
        )
    except tokens.TokenRequestInvalid as exc:
        form.add_refusal(exc.field, str(exc))
        return _render(request, status=400, token_form=form)
    return _render(request, new_token=raw, new_name=token.name)


@access(LOGGED_IN)
@require_POST
def token_rotate(request, pk: int):
    try:
        token, raw = tokens.rotate(_own_token(request, pk))
    except tokens.TokenRequestInvalid as exc:
        form = TokenCreateForm()
        form.add_refusal(None, str(exc))
        return _render(request, status=400, token_form=form)
    return _render(request, new_token=raw, new_name=token.name)


@access(LOGGED_IN)
@require_POST
def token_revoke(request, pk: int):
    tokens.revoke(_own_token(request, pk))
    return _render(request)


@access(LOGGED_IN)
@require_POST
def password_change(request):
    form = PasswordChangeWithTokensForm(request.user, request.POST)
    if not form.is_valid():
        return _render(request, status=400, password_form=form)
    user = form.save()
    update_session_auth_hash(request, user)  # this browser stays signed in
    text = "Your password was changed."
    if form.cleaned_data["revoke_tokens"]:
        count = tokens.revoke_all(user, "revoked when the password changed")
        text += f" {count} API token{'s' if count != 1 else ''} revoked." if count else ""
    messages.success(request, text)
    return redirect("web:account")
