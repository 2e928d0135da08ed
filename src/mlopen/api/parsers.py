"""The API's body parsers: DRF's, with a nesting limit on JSON and the folder paths of multipart files kept."""

from __future__ import annotations

from django.http.multipartparser import MultiPartParserError
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from mlopen.core.nesting import MAX_JSON_DEPTH, too_deep
from mlopen.core.uploads import PathKeepingMultiPartParser

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


class MultiPartParser(parsers.MultiPartParser):
    """DRF's MultiPartParser; each file also carries ``client_path``, its name as the client sent it
    (support files keep their folders: mlopen.core.uploads)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        request = parser_context["request"]
        meta = request.META.copy()
        meta["CONTENT_TYPE"] = media_type
        encoding = parsers.get_encoding(parser_context)
        try:
            data, files = PathKeepingMultiPartParser(meta, stream, request.upload_handlers, encoding).parse()
        except MultiPartParserError as exc:
            raise ParseError(f"Multipart form parse error - {exc}") from None
        return parsers.DataAndFiles(data, files)
