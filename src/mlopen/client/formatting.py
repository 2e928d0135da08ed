"""How the client shows single values in a terminal: times, sizes, durations, text cut to one line.

Every function takes what the API answers (ISO times, byte counts, seconds, maybe None) and returns
a string; none of them prints.
"""

from __future__ import annotations

import html
import re
from datetime import datetime

from rich.markup import escape


def escape_markup(text) -> str:
    """`text` made safe to put inside a rich markup string (a name like "[x]" stays as typed)."""
    return escape(str(text))


def format_time(value: str | None) -> str:
    """An ISO 8601 time from the API as local time to the second; "-" for none."""
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_size(value) -> str:
    """A byte count as B, KB, MB or GB; "-" for none."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def format_duration(seconds) -> str:
    """Seconds as "4.2 s", "3 min 5 s" or "2 h 10 min"; "-" for none."""
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def one_line(text, limit: int = 60) -> str:
    """`text` with its whitespace folded to single spaces, cut to `limit` characters with "…"."""
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain_text(markup: str) -> str:
    """A result's text may carry HTML markup (<b>, <br>); show it as plain text in a terminal."""
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</li>", "\n", markup)
    text = re.sub(r"<[^>]+>", "", text)
    return html.unescape(text).strip()
