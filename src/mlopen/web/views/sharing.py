"""The sharing card on dataset and run pages, and the owner's form behind it."""

from __future__ import annotations

from django.contrib import messages

from mlopen.core.sharing import SharingRefused, set_sharing, sharing_of, stop_sharing
from mlopen.web.forms import ShareForm


def sharing_context(request, obj, manageable: bool) -> dict:
    """What the card shows: who sees the object, and (to its owner) the form to change it."""
    return {
        "state": sharing_of(obj),
        "manageable": manageable,
        "form": ShareForm(user=request.user, obj=obj) if manageable else None,
        "shared_groups": list(obj.shared_groups.order_by("name")) if manageable else [],
    }


def apply_share_form(request, obj, noun: str) -> None:
    """Carry out one submitted sharing action and say what happened."""
    form = ShareForm(request.POST, user=request.user, obj=obj)
    if not form.is_valid():
        messages.error(
            request,
            "Sharing was not changed: " + " ".join(message for errors in form.errors.values() for message in errors),
        )
        return
    action, group = form.cleaned_data["action"], form.cleaned_data.get("group")
    try:
        if action == "everyone":
            set_sharing(obj, request.user, everyone=True)
            messages.success(request, f"The {noun} is now visible to everyone who can log in.")
        elif action == "group":
            set_sharing(obj, request.user, add_groups=[group.pk])
            messages.success(request, f"The {noun} is now shared with the group “{group.name}”.")
        elif action == "unshare-group":
            set_sharing(obj, request.user, remove_groups=[group.pk])
            messages.success(request, f"The {noun} is no longer shared with the group “{group.name}”.")
        else:
            stop_sharing(obj)
            messages.success(request, f"The {noun} is private again: only you and administrators see it.")
    except SharingRefused as exc:
        messages.error(request, exc.message)
