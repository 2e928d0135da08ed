"""Helpers that read a page's HTML the way a browser would, to check what our policy forbids."""

from __future__ import annotations

from html.parser import HTMLParser


class _Scan(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.scripts: list[dict] = []
        self.handlers: list[tuple[str, str]] = []
        self.iframes: list[dict] = []
        self._script = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.handlers += [(tag, name) for name in attrs if name.startswith("on")]
        self.handlers += [
            (tag, "javascript: url")
            for name, value in attrs.items()
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith("javascript:")
        ]
        if tag == "script":
            self._script = {"attrs": attrs, "body": ""}
            self.scripts.append(self._script)
        if tag == "iframe":
            self.iframes.append(attrs)

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            self._script["body"] += data


def scan(html: str) -> _Scan:
    parser = _Scan()
    parser.feed(html)
    return parser


def inline_scripts(html: str) -> list[dict]:
    """<script> elements that would run inline code (no src, and not a JSON data block)."""
    return [s for s in scan(html).scripts if "src" not in s["attrs"] and s["attrs"].get("type") != "application/json"]


def event_handlers(html: str) -> list[tuple[str, str]]:
    return scan(html).handlers
