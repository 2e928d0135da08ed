"""/account/notifications/: what one is told when one's runs end, by default and per pipeline."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render

from mlopen.core.access import LOGGED_IN, access
from mlopen.core.numbers import parse_id
from mlopen.notifications import preferences
from mlopen.notifications.models import DEFAULT_BROWSER, DEFAULT_EMAIL, NotificationPreference
from mlopen.pipelines.models import Pipeline

CHOICES = NotificationPreference.Choice.choices


class PreferenceForm(forms.Form):
    pipeline = forms.ModelChoiceField(
        queryset=Pipeline.objects.none(),
        required=False,
        empty_label="Every pipeline (default)",
        widget=forms.Select(attrs={"class": "form-select"}),
    )
    email = forms.ChoiceField(choices=CHOICES, label="E-mail", widget=forms.Select(attrs={"class": "form-select"}))
    browser = forms.ChoiceField(choices=CHOICES, label="Browser", widget=forms.Select(attrs={"class": "form-select"}))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pipeline"].queryset = Pipeline.objects.visible_to(user).order_by("name").only("pk", "name")


@access(LOGGED_IN)
def notification_preferences(request):
    user = request.user
    if request.method == "POST" and request.POST.get("action") == "delete":
        pipeline_id = parse_id(request.POST.get("pipeline", ""))
        if pipeline_id is not None and preferences.delete_preference(user, pipeline_id):
            messages.success(request, "That pipeline follows your default again.")
        return redirect("web:notification-preferences")
    if request.method == "POST":
        form = PreferenceForm(request.POST, user=user)
        if form.is_valid():
            pipeline = form.cleaned_data["pipeline"]
            preferences.set_preference(
                user,
                pipeline=pipeline.pk if pipeline else None,
                email=form.cleaned_data["email"],
                browser=form.cleaned_data["browser"],
            )
            messages.success(request, f"Saved for {pipeline.name if pipeline else 'every pipeline'}.")
            return redirect("web:notification-preferences")
    else:
        form = PreferenceForm(user=user, initial={"email": DEFAULT_EMAIL, "browser": DEFAULT_BROWSER})
    rows = preferences.preferences_of(user)
    default = next((row for row in rows if row.pipeline_id is None), None)
    return render(
        request,
        "web/notifications.html",
        {
            "form": form,
            "default_email": default.email if default else DEFAULT_EMAIL,
            "default_browser": default.browser if default else DEFAULT_BROWSER,
            "overrides": [row for row in rows if row.pipeline_id is not None],
            "choices": CHOICES,
        },
    )
