"""Syntax highlighting of a pipeline's source, on the server (Pygments), so the pages need no script for it."""

from __future__ import annotations

from django.utils.safestring import SafeString, mark_safe
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

_FORMATTER = HtmlFormatter(linenos="table", lineanchors="L", anchorlinenos=True, wrapcode=True)


def highlighted(path: str, text: str) -> SafeString:
    """``text`` as HTML with line numbers, coloured by the language its file name says (else plain)."""
    try:
        lexer = get_lexer_for_filename(path, stripnl=False)
    except ClassNotFound:
        lexer = TextLexer(stripnl=False)
    # Pygments escapes the source itself; its markup is only spans with class names.
    return mark_safe(highlight(text, lexer, _FORMATTER))  # noqa: S308
