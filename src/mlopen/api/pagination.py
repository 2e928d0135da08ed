"""Page-number pagination for every list, strict about its own query parameters.

DRF's default quietly falls back to page size 50 for ``page_size=abc`` and answers ``page=0``
with a bare "Invalid page."; here a malformed page or page size is a 400 that names the problem,
and a page past the end is a 404 that says where the last page is.
"""

from __future__ import annotations

from django.core.paginator import InvalidPage
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination

from mlopen.core.numbers import MAX_INT, parse_int

MAX_PAGE_SIZE = 1000


def positive_int(raw, name: str, maximum: int | None = None) -> int:
    """Parse a query parameter that must be a whole number >= 1 (and <= maximum); 400 otherwise."""
    value = parse_int(raw, minimum=1, maximum=maximum if maximum is not None else MAX_INT)
    if value is None:
        top = maximum if maximum is not None else MAX_INT
        raise ValidationError({name: f"Must be a whole number from 1 to {top}, got {str(raw)[:40]!r}."})
    return value


class StandardPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:  # an empty page_size= is malformed (400), as the schema says: an integer
            return self.page_size
        return positive_int(raw, self.page_size_query_param, self.max_page_size)

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param)
        if raw is None:
            return 1
        if raw in self.last_page_strings:
            return paginator.num_pages
        return positive_int(raw, self.page_query_param)

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        page_size = self.get_page_size(request)
        paginator = self.django_paginator_class(queryset, page_size)
        number = self.get_page_number(request, paginator)
        try:
            self.page = paginator.page(number)
        except InvalidPage:
            raise NotFound(f"Page {number} is past the last page ({paginator.num_pages}).") from None
        return list(self.page)

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "Page number, from 1.",
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Results per page (default {self.page_size}, at most {self.max_page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]
