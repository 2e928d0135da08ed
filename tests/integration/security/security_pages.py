"""Read a page's HTML as a browser would and list everything in it that could run code."""

from __future__ import annotations

from html.parser import HTMLParser

_URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "data", "poster", "srcdoc", "background"}
_NEVER = {"svg", "math", "object", "embed", "base", "applet", "frame", "frameset", "meta"}


class _Scan(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._in_script: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = {name: value or "" for name, value in attrs}
        for name, value in attrs.items():
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
            # htmx acts on hx-* attributes of anything on the page: a pipeline's must never get there.
            if name.startswith(("hx-", "data-hx-", "hx:")) and "xss" in value:
                self.problems.append(f"<{tag} {name}={value[:40]!r}>")
            scheme = value.strip().lower().replace("\t", "")
            if name in _URL_ATTRIBUTES and scheme.startswith(("javascript:", "vbscript:", "data:text")):
                self.problems.append(f"<{tag} {name}={value[:40]!r}>")
        if tag == "script":
            src = attrs.get("src", "")
            if attrs.get("type") == "application/json":
                self._in_script = attrs
            elif not src.startswith("/static/"):
                self.problems.append(f"<script src={src[:60]!r}> (inline or foreign script)")
        elif tag == "iframe":
            if attrs.get("sandbox") != "allow-scripts" or not attrs.get("src", "").startswith("/runs/"):
                self.problems.append(f"<iframe {attrs}>")
        elif tag == "form":
            action = attrs.get("action", "")
            if action and (not action.startswith("/") or action.startswith("//")):
                self.problems.append(f"<form action={action[:60]!r}>")
        elif tag == "meta":
            if not (attrs.get("charset") or attrs.get("name") in ("viewport", "htmx-config")):
                self.problems.append(f"<meta {attrs}>")
        elif tag in _NEVER:
            self.problems.append(f"<{tag}>")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None and "<" in data:
            self.problems.append(f"a raw '<' inside a JSON script block: {data[:60]!r}")


def dangerous_markup(html: str) -> list[str]:
    """What in ``html`` could run script or send data elsewhere; [] for a safe page."""
    scan = _Scan()
    scan.feed(html)
    return scan.problems
