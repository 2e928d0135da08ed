"""The OpenAPI schema: drf-spectacular's, plus the error answers every operation can give.

Every 4xx body is {"detail": "...", "errors": {field: message}} (see mlopen.api.errors); documenting
them on each operation lets clients (and Schemathesis) check error answers like any other.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="one sentence saying what was wrong")
    errors = serializers.DictField(child=serializers.CharField(), help_text="field name → message")


_DESCRIPTIONS = {
    "400": "The request was malformed or a value was not valid.",
    "401": "No credentials, or an unknown token.",
    "403": "Authenticated, but not allowed to do this.",
    "404": "No such object (or not visible to you), or a page past the end.",
    "405": "Method not allowed.",
    "406": "The Accept header asks for a format this operation cannot give.",
    "409": "The object is in a state that does not allow this.",
    "413": "The upload is too large.",
    "414": "The URL is too long (answered by the web server, not mlopen).",
    "415": "The request body's media type is not accepted here.",
}


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        self._add_links(responses)
        codes = ["400", "401", "403", "404", "405", "406", "414"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["413", "415"]
        for code in codes:
            if code == "414":  # the web server's own page; its body is not ours to describe
                responses.setdefault(code, {"description": _DESCRIPTIONS[code]})
            elif code not in responses:
                body = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                body["description"] = _DESCRIPTIONS[code]
                responses[code] = body
            elif "content" not in responses[code]:
                responses[code] = self._get_response_for_code(ErrorSerializer, code, direction=direction)
        return responses

    def _add_links(self, responses: dict) -> None:
        """OpenAPI links from what an operation creates to what can be done with it.

        A view lists them in ``openapi_links``: {action: {link name: operationId}}; each link passes
        the created object's ``id`` as the target's ``id``. Clients (and Schemathesis's stateful
        tests) follow them from a new run to its logs, result and cancel.
        """
        links = getattr(self.view, "openapi_links", {}).get(getattr(self.view, "action", None))
        for code in ("200", "201"):
            if links and code in responses:
                responses[code]["links"] = {
                    name: {"operationId": operation_id, "parameters": {"id": "$response.body#/id"}}
                    for name, operation_id in links.items()
                }
