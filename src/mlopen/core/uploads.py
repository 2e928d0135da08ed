"""Uploads: the size limit (MLOPEN_MAX_UPLOAD_MB), enforced while the body streams in, and the
folder paths of uploaded files, kept for the code that asks for them.

A request that announces a larger body is answered 413 before any of it is read. A request that
does not announce its size (chunked) is counted chunk by chunk by the upload handler and stopped
as soon as it passes the limit; Django's temporary upload files are removed when the request
ends, so nothing partial is left behind.

Django keeps only the last part of a multipart file name ("textnet/model.py" arrives as
"model.py"), which is right for almost every upload. A pipeline's support files need the folders:
``PathKeepingMultiPartParser`` (used by the pages through ``UploadPathsMiddleware`` and by the API
through ``mlopen.api.parsers``) leaves the file's ``name`` as Django made it and records the name
the client sent, unchecked, as ``client_path``. Only mlopen.pipelines.support reads it, and it
refuses every path that could leave the version's folder.
"""

from __future__ import annotations

import html

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParser
from django.utils.datastructures import ImmutableList

from mlopen.core.outages import wants_json


class UploadTooLarge(Exception):
    pass


def limit_bytes() -> int:
    return settings.MLOPEN_MAX_UPLOAD_MB * 1024 * 1024


def _too_large(request) -> HttpResponse:
    message = (
        f"The upload is larger than the {settings.MLOPEN_MAX_UPLOAD_MB} MB limit "
        "(MLOPEN_MAX_UPLOAD_MB). Upload a smaller file or ask an admin to raise the limit."
    )
    if wants_json(request):
        return JsonResponse({"detail": message, "errors": {"file": message}}, status=413)
    return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")


class UploadLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            announced = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            announced = 0
        # Leave room for the multipart envelope around a file of exactly the limit.
        if announced > limit_bytes() + 1024 * 1024:
            return _too_large(request)
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, UploadTooLarge):
            return _too_large(request)
        return None


class LimitedUploadHandler(FileUploadHandler):
    """First in FILE_UPLOAD_HANDLERS: counts every file byte of the request and stops past the limit."""

    def __init__(self, request=None):
        super().__init__(request)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > limit_bytes():
            raise UploadTooLarge()
        return raw_data

    def file_complete(self, file_size):
        return None


class PathKeepingMultiPartParser(MultiPartParser):
    """Django's multipart parser; each uploaded file also carries ``client_path``, its name as sent."""

    _sent_name = ""

    def sanitize_file_name(self, file_name):
        # The only place the name is seen whole: Django strips its folders right here.
        self._sent_name = html.unescape(file_name)
        return super().sanitize_file_name(file_name)

    def handle_file_complete(self, old_field_name, counters):
        field = old_field_name
        before = len(self._files.getlist(field))
        super().handle_file_complete(old_field_name, counters)
        received = self._files.getlist(field)
        # A handler may have kept nothing; only a file that was just added gets the name.
        if len(received) > before:
            received[-1].client_path = self._sent_name


def _parse_keeping_paths(request, META, post_data):
    # HttpRequest.parse_file_upload, with the parser above (Django has no setting for its class).
    request.upload_handlers = ImmutableList(
        request.upload_handlers, warning="You cannot alter upload handlers after the upload has been processed."
    )
    return PathKeepingMultiPartParser(META, post_data, request.upload_handlers, request.encoding).parse()


class UploadPathsMiddleware:
    """Pages parse multipart bodies with PathKeepingMultiPartParser. Before CsrfViewMiddleware,
    which is the first to read request.POST (and so to parse the body)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.parse_file_upload = lambda META, post_data: _parse_keeping_paths(request, META, post_data)
        return self.get_response(request)
