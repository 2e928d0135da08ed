"""Showing text that pipelines return: formatting survives, anything that could run does not.

Pipelines return `text` with HTML markup (the original knn example used <b>, <div>, <a>, <sup>).
It is shown inside our own pages, so it goes through one allow-list here and nowhere else.
"""

from __future__ import annotations

import re

import nh3
from django.utils.html import escape, linebreaks
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_TAGS = {
    "b",
    "i",
    "em",
    "strong",
    "u",
    "s",
    "small",
    "mark",
    "sup",
    "sub",
    "p",
    "div",
    "span",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "li",
    "dl",
    "dt",
    "dd",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "tr",
    "th",
    "td",
    "caption",
    "colgroup",
    "col",
    "pre",
    "code",
    "kbd",
    "samp",
    "blockquote",
    "a",
    "img",
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "th": {"colspan", "rowspan", "align"},
    "td": {"colspan", "rowspan", "align"},
    "ol": {"start"},
}
# The script-like tags whose *content* is dropped too (other unknown tags lose only the tag).
_DROP_WITH_CONTENT = {
    "script",
    "style",
    "noscript",
    "template",
    "iframe",
    "object",
    "embed",
    "svg",
    "math",
    "form",
    "textarea",
    "select",
    "button",
}
_LOOKS_LIKE_MARKUP = re.compile(r"<[A-Za-z!/]")
_LINK_SCHEMES = ("http:", "https:", "mailto:")
_IMAGE_SCHEMES = ("http:", "https:", "data:image/")


def _keep_safe_urls(tag: str, attribute: str, value: str) -> str | None:
    """<a href> may be http(s) or mailto; <img src> may be http(s) or an inline data:image."""
    if (tag, attribute) == ("a", "href"):
        return value if value.strip().lower().startswith(_LINK_SCHEMES) else None
    if (tag, attribute) == ("img", "src"):
        return value if value.strip().lower().startswith(_IMAGE_SCHEMES) else None
    return value


def clean_pipeline_html(html: str) -> str:
    """The pipeline's HTML with only formatting tags and safe links and images left."""
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags=_DROP_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        attribute_filter=_keep_safe_urls,
        url_schemes={"http", "https", "mailto", "data"},
        url_relative="deny",
        link_rel="noopener noreferrer nofollow",
    )


def format_pipeline_text(text: str | None) -> SafeString:
    """A run's text ready for a template: sanitized HTML, or plain text with its line breaks kept."""
    if not text:
        return mark_safe("")
    if not _LOOKS_LIKE_MARKUP.search(text):
        return mark_safe(linebreaks(escape(text)))
    return mark_safe(clean_pipeline_html(text))


# CommonMark with raw HTML off (it is shown escaped) and tables; links keep only the safe schemes.
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def format_notes(text: str | None) -> SafeString:
    """A run's notes (markdown) as HTML: formatting, tables and http(s) links, nothing that runs."""
    if not text:
        return mark_safe("")
    return mark_safe(clean_pipeline_html(_MARKDOWN.render(text)))
