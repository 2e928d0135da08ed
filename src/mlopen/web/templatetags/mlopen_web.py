"""Small display helpers for the web pages: status badges and durations."""

from __future__ import annotations

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

register = template.Library()

# status → (Bootstrap colour, bootstrap-icons name)
_STATUS_STYLE = {
    "queued": ("secondary", "hourglass-split"),
    "running": ("primary", "arrow-repeat"),
    "succeeded": ("success", "check-circle-fill"),
    "failed": ("danger", "x-octagon-fill"),
    "cancelled": ("warning", "slash-circle"),
}
_ENV_STYLE = {
    "none": ("light", "box"),
    "building": ("info", "tools"),
    "ready": ("success", "check-circle"),
    "failed": ("danger", "exclamation-triangle"),
}


@register.simple_tag
def status_badge(status: str):
    colour, icon = _STATUS_STYLE.get(status, ("secondary", "question-circle"))
    text_class = " text-dark" if colour in ("warning", "light") else ""
    spin = " spin" if status == "running" else ""
    return format_html(
        '<span class="badge status-badge text-bg-{}{}" data-status="{}">'
        '<i class="bi bi-{}{}" aria-hidden="true"></i> {}</span>',
        colour,
        text_class,
        status,
        icon,
        spin,
        status,
    )


@register.simple_tag
def env_badge(version):
    colour, icon = _ENV_STYLE.get(version.env_status, ("secondary", "question-circle"))
    text_class = " text-dark" if colour == "light" else ""
    return format_html(
        '<span class="badge text-bg-{}{} border"><i class="bi bi-{}" aria-hidden="true"></i> {}</span>',
        colour,
        text_class,
        icon,
        version.get_env_status_display(),
    )


@register.filter
def duration(seconds) -> str:
    """0.42 → "420 ms", 75 → "1 min 15 s", 7260 → "2 h 1 min"."""
    if seconds is None or seconds == "":
        return "—"
    seconds = float(seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{round(seconds)} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def percent(fraction) -> int:
    if fraction is None:
        return 0
    return max(0, min(100, round(float(fraction) * 100)))


@register.filter
def startswith(value, prefix) -> bool:
    return str(value).startswith(str(prefix))


@register.filter
def widget(bound_field):
    """Render a form field's widget, marked is-invalid when it has errors."""
    if not bound_field.errors:
        return bound_field.as_widget()
    css = bound_field.field.widget.attrs.get("class", "")
    return bound_field.as_widget(attrs={"class": f"{css} is-invalid".strip()})


@register.filter
def ago(moment) -> str:
    """ "just now" for the last minute, then "5 minutes ago", "2 days, 3 hours ago"."""
    if not moment:
        return "—"
    if (timezone.now() - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment)} ago"


@register.filter
def cell(value) -> str:
    """A parameter or metric in a table cell: floats to 4 significant digits, nothing as "—"."""
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@register.filter
def get(mapping, key):
    """mapping[key] in a template (a column chosen by a loop variable); empty when missing."""
    return mapping.get(key, "") if hasattr(mapping, "get") else ""
