"""Pagination for every list, strict about its own query parameters: page numbers (StandardPagination),
and keyset cursors for the lists that grow without bound (KeysetPagination, the runs).

DRF's default quietly falls back to page size 50 for ``page_size=abc`` and answers ``page=0``
with a bare "Invalid page."; here a malformed page or page size is a 400 that names the problem,
and a page past the end is a 404 that says where the last page is.
"""

from __future__ import annotations

from base64 import b64decode
from datetime import datetime
from urllib import parse

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.paginator import InvalidPage
from django.db.models import Q
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination, PageNumberPagination
from rest_framework.response import Response

from mlopen.core.numbers import MAX_INT, parse_int
from mlopen.core.paging import KeysFirstPaginator

MAX_PAGE_SIZE = 1000


def positive_int(raw, name: str, maximum: int | None = None) -> int:
    """Parse a query parameter that must be a whole number >= 1 (and <= maximum); 400 otherwise."""
    value = parse_int(raw, minimum=1, maximum=maximum if maximum is not None else MAX_INT)
    if value is None:
        top = maximum if maximum is not None else MAX_INT
        raise ValidationError({name: f"Must be a whole number from 1 to {top}, got {str(raw)[:40]!r}."})
    return value


class StandardPagination(PageNumberPagination):
    django_paginator_class = KeysFirstPaginator  # deep page numbers skip keys, not whole rows
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


# A list's count is exact up to this many items; past it the count is not scanned for ("10 000+").
COUNT_THRESHOLD = 10_000


def capped_count(queryset, threshold: int = COUNT_THRESHOLD) -> int | None:
    """How many items ``queryset`` holds, or None past ``threshold``: one query that stops reading
    after threshold + 1 index entries, whatever the table's size."""
    counted = queryset.order_by().values("pk")[: threshold + 1].count()
    return None if counted > threshold else counted


def count_text(count: int | None, threshold: int = COUNT_THRESHOLD) -> str:
    return f"{threshold:,}+".replace(",", " ") if count is None else f"{count:,}".replace(",", " ")


_KEY_SEPARATOR = "|"


def _split_position(position: str) -> tuple[datetime, int | None]:
    """A cursor's position: "<created_at>|<id>" (this mlopen's), or "<created_at>" alone (an earlier
    one's, paged with its offset). ValueError for anything else."""
    time_text, separator, id_text = position.partition(_KEY_SEPARATOR)
    created_at = parse_datetime(time_text)
    if created_at is None:
        raise ValueError("not a time")
    if not separator:
        return created_at, None
    pk = parse_int(id_text, minimum=1, maximum=MAX_INT)
    if pk is None:
        raise ValueError("not an id")
    return created_at, pk


def _after_key(created_at: datetime, pk: int | None, newer: bool) -> Q:
    """The items past (created_at, pk) in newest-first order, or before it (``newer``). Spelled as a
    range on created_at plus a filter on the few rows of that very time, so both databases read the
    (…, created_at, id) indexes as one range."""
    if pk is None:  # an earlier mlopen's cursor: the time alone, ties stepped over by its offset
        return Q(created_at__gt=created_at) if newer else Q(created_at__lt=created_at)
    if newer:
        return Q(created_at__gte=created_at) & (Q(created_at__gt=created_at) | Q(id__gt=pk))
    return Q(created_at__lte=created_at) & (Q(created_at__lt=created_at) | Q(id__lt=pk))


class KeysetPagination(CursorPagination):
    """Keyset ("cursor") pagination, newest first: page 2 000 costs what page 1 costs (an index range
    read from the last item seen, never an OFFSET scan). ``next``/``previous`` carry an opaque
    ``cursor``; one that was changed is a 400 naming ``cursor``. ``count`` is exact up to
    COUNT_THRESHOLD and null past it, ``count_text`` says the same for people ("10 000+").

    A request that gives ``page`` gets page-number pagination as before (StandardPagination), for
    clients that page by number; deep page numbers skip index entries (KeysFirstPaginator), cursors
    skip nothing.

    A cursor's position is the whole key, ``created_at`` and ``id`` (DRF's holds the first field
    only, and steps over ties by an offset it caps at 1 000: runs sharing one created_at, as runs
    imported or made in the same microsecond can, would end the walk with a 400). A cursor an earlier
    mlopen gave (a time alone, with an offset) still pages the way it did.
    """

    ordering = ("-created_at", "-id")
    page_query_param = "page"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    invalid_cursor_message = "This cursor is not one this list gave (it was changed or cut); start again without it."

    def __init__(self) -> None:
        self.numbered: StandardPagination | None = None
        self.count: int | None = None

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        return self.page_size if raw is None else positive_int(raw, self.page_size_query_param, self.max_page_size)

    def decode_cursor(self, request):
        """DRF's decoding, stricter: anything but a cursor this list could have given is a 400."""
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        try:
            tokens = parse.parse_qs(
                b64decode(encoded.encode("ascii"), validate=True).decode("ascii"), strict_parsing=True
            )
            if set(tokens) - {"o", "r", "p"} or any(len(values) != 1 for values in tokens.values()):
                raise ValueError("unknown or repeated part")
            offset = int(tokens.get("o", ["0"])[0])
            reverse = tokens.get("r", ["0"])[0]
            position = tokens.get("p", [None])[0]
            if not 0 <= offset <= self.offset_cutoff or reverse not in ("0", "1"):
                raise ValueError("offset or direction out of range")
            if position is not None:
                _split_position(position)
        except (TypeError, ValueError):  # binascii.Error and UnicodeError are ValueErrors
            raise ValidationError({self.cursor_query_param: self.invalid_cursor_message}) from None
        return Cursor(offset=offset, reverse=reverse == "1", position=position)

    def _get_position_from_instance(self, instance, ordering):
        return f"{instance.created_at.isoformat()}{_KEY_SEPARATOR}{instance.pk}"  # the runs: model instances

    def paginate_queryset(self, queryset, request, view=None):
        # Any order but the newest first (the cursor's own) is paged by number: a cursor over a
        # metric or a duration would need that value in the cursor, and DRF's cursor re-orders.
        custom_order = request.query_params.get("ordering", "") not in ("", "-created")
        if self.page_query_param in request.query_params or custom_order:
            self.numbered = StandardPagination()
            return self.numbered.paginate_queryset(queryset, request, view)
        self.count = capped_count(queryset)
        try:
            return self._keyset_page(queryset, request)
        except DjangoValidationError:  # a position of the right shape the database still refuses
            raise ValidationError({self.cursor_query_param: self.invalid_cursor_message}) from None

    def _keyset_page(self, queryset, request) -> list:
        """DRF's CursorPagination.paginate_queryset with one change: the page starts after the whole
        key (created_at, id) of the cursor's item, so no offset is ever needed. DRF has no hook for
        the filter alone; the links (get_next_link, get_previous_link) are DRF's own and, since no two
        items share a position, always give offset 0."""
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.cursor = self.decode_cursor(request)
        offset, reverse, position = self.cursor or (0, False, None)
        queryset = queryset.order_by(*(("created_at", "id") if reverse else self.ordering))
        if position is not None:
            # reverse = the page before the cursor's item, which in newest-first order is newer.
            queryset = queryset.filter(_after_key(*_split_position(position), newer=reverse))
        results = list(queryset[offset : offset + self.page_size + 1])
        self.page = results[: self.page_size]
        following = (
            self._get_position_from_instance(results[-1], self.ordering) if len(results) > len(self.page) else None
        )
        came_from_somewhere = position is not None or offset > 0
        if reverse:
            self.page.reverse()
            self.has_next, self.has_previous = came_from_somewhere, following is not None
            self.next_position, self.previous_position = position, following
        else:
            self.has_next, self.has_previous = following is not None, came_from_somewhere
            self.next_position, self.previous_position = following, position
        if (self.has_previous or self.has_next) and self.template is not None:
            self.display_page_controls = True
        return self.page

    def get_paginated_response(self, data):
        if self.numbered is not None:
            response = self.numbered.get_paginated_response(data)
            response.data["count_text"] = count_text(response.data["count"])
            return response
        return Response(
            {
                "count": self.count,
                "count_text": count_text(self.count),
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        body = super().get_paginated_response_schema(schema)
        body["properties"] = {
            "count": {
                "type": "integer",
                "nullable": True,
                "description": f"exact up to {COUNT_THRESHOLD}; null past it",
            },
            "count_text": {"type": "string", "example": "10 000+"},
            **body["properties"],
        }
        return body

    def get_schema_operation_parameters(self, view):
        cursor, size = super().get_schema_operation_parameters(view)
        cursor["description"] = "The cursor of the page to show, from a previous answer's next or previous link."
        size["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        page = {
            "name": self.page_query_param,
            "required": False,
            "in": "query",
            "description": "Page number, from 1, instead of a cursor (deep pages cost more).",
            "schema": {"type": "integer", "minimum": 1},
        }
        return [cursor, page, size]
