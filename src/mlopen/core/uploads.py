"""The upload size limit (MLOPEN_MAX_UPLOAD_MB), enforced while the body streams in.

A request that announces a larger body is answered 413 before any of it is read. A request that
does not announce its size (chunked) is counted chunk by chunk by the upload handler and stopped
as soon as it passes the limit; Django's temporary upload files are removed when the request
ends, so nothing partial is left behind.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpResponse, JsonResponse


class UploadTooLarge(Exception):
    pass


def limit_bytes() -> int:
    return settings.MLOPEN_MAX_UPLOAD_MB * 1024 * 1024


def _too_large(request) -> HttpResponse:
    message = (
        f"The upload is larger than the {settings.MLOPEN_MAX_UPLOAD_MB} MB limit "
        "(MLOPEN_MAX_UPLOAD_MB). Upload a smaller file or ask an admin to raise the limit."
    )
    if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
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
