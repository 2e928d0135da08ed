"""Page numbers that stay cheap deep into a long list.

``?page=200`` of 50 is ``OFFSET 9950``: the database builds 9 950 whole rows (every selected
column and join) only to throw them away. Past the first pages, :class:`KeysFirstPaginator` asks
for the page's primary keys first (the same ordering and filters, one narrow column, which an
index can answer) and then for those rows alone: the skipped rows are never built. This is the
"deferred join" of MySQL and PostgreSQL folklore; Django has no paginator for it.
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import QuerySet

# Below this offset a plain OFFSET costs less than a second query.
KEYS_FIRST_FROM = 500


class KeysFirstPaginator(Paginator):
    """Django's Paginator; a page deeper than KEYS_FIRST_FROM rows is read keys first."""

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        return self._get_page(self._rows(bottom, top), number, self)

    def _rows(self, bottom: int, top: int):
        rows = self.object_list
        if bottom < KEYS_FIRST_FROM or not isinstance(rows, QuerySet) or not rows.ordered:
            return rows[bottom:top]
        keys = list(rows.values_list("pk", flat=True)[bottom:top])
        found = rows.in_bulk(keys)  # filters still hold: a row deleted meanwhile is just left out
        return [found[key] for key in keys if key in found]
