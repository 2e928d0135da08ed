"""The API's JSON body parser: DRF's, refusing bodies nested too deeply to be walked safely."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from mlopen.core.nesting import MAX_JSON_DEPTH, too_deep

NESTED_TOO_DEEPLY = f"Request body is nested too deeply (limit {MAX_JSON_DEPTH} levels)."


class JSONParser(parsers.JSONParser):
    """DRF's JSONParser with a nesting limit: a 400, never a RecursionError (a 500).

    json's C parser recurses once per level and raises RecursionError near the interpreter's limit;
    below that, serializers and error messages that walk the body recursively could still hit it.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(NESTED_TOO_DEEPLY) from None
        if too_deep(data):
            raise ParseError(NESTED_TOO_DEEPLY)
        return data
