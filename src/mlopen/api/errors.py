"""One error body for every API failure: {"detail": "...", "errors": {field: message}}."""

from __future__ import annotations

import math

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from rest_framework import status
from rest_framework.exceptions import NotFound, Throttled, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def _flatten(errors, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(errors, list):
        if all(not isinstance(item, (dict, list)) for item in errors):
            flat[prefix or "non_field_errors"] = " ".join(str(item) for item in errors)
        else:
            for index, item in enumerate(errors):
                flat.update(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        flat[prefix or "non_field_errors"] = str(errors)
    return flat


def error_response(detail: str, errors: dict | None = None, status_code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"detail": detail, "errors": errors or {}}, status=status_code)


def refusal_response(exc) -> Response:
    """A domain function's refusal (``message``, ``errors``, ``status``; ``retry_after`` for a 429,
    sent as the Retry-After header and in the body)."""
    response = error_response(exc.message, exc.errors, exc.status)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        response.data["retry_after"] = retry_after
        response["Retry-After"] = str(retry_after)
    return response


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        return error_response(
            "The request body is too large; send files as multipart uploads.",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SuspiciousOperation):  # too many fields or files, a malformed multipart body...
        return error_response(f"The request was refused: {exc}")
    if isinstance(exc, Http404):
        # One answer for "does not exist" and "not yours": the model's name is no one's business.
        exc = NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, Throttled):
        # DRF's own words name no limit; the throttle (mlopen.api.throttling) left which it was.
        limit = getattr(context.get("request"), "throttled_by", None) or "the request rate"
        wait = max(1, math.ceil(exc.wait or 1))
        response["Retry-After"] = str(wait)
        response.data = {
            "detail": f"Too many requests: the limit is {limit}. Try again in {wait} s.",
            "errors": {},
            "retry_after": wait,
        }
        return response
    if isinstance(exc, ValidationError):
        errors = _flatten(response.data)
        first = next(iter(errors.items()), ("", "Invalid request."))
        detail = f"{first[0]}: {first[1]}" if first[0] not in ("", "non_field_errors") else first[1]
        response.data = {"detail": detail, "errors": errors}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"]), "errors": {}}
    else:
        response.data = {"detail": str(response.data), "errors": {}}
    return response
