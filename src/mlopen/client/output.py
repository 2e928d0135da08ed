"""Where the client's output goes, and the one way a command prints its result.

A command's result goes to stdout: with `--json` exactly the API's JSON, so it can be piped to jq;
otherwise its human form (a line of text, a table, a few lines about one object). Status lines,
progress bars and tailed logs go to stderr and never mix into the JSON.

Every command prints its result with `emit`, which is the only place that chooses between the two.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlopen.client.exit_codes import EXIT_OK
from mlopen.client.formatting import escape_markup


class Output:
    """stdout for results (tables or JSON), stderr for everything else."""

    def __init__(self, as_json: bool = False):
        self.as_json = as_json
        # Not a terminal (a pipe, a file, CI): wide lines rather than rich's default 80 columns.
        self.out = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)
        self.err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)

    def json(self, body) -> None:
        sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def print(self, *objects, **kwargs) -> None:
        """Print on stdout; strings are rich markup (escape names with formatting.escape_markup)."""
        self.out.print(*objects, **kwargs)

    def note(self, text: str) -> None:
        """A status line on stderr (never mixed into --json output)."""
        self.err.print(text, markup=False)

    def table(self, columns: list[str], rows: list[list], title: str | None = None) -> None:
        if title:
            self.out.print(f"[bold]{escape_markup(title)}[/bold]")
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            # Text, not markup: a name like "ham [x]" or "[/x]" is shown as typed.
            table.add_row(*[Text("" if cell is None else str(cell)) for cell in row])
        self.out.print(table)


@dataclass
class ListTable:
    """How a page of a list (the API's {"count", "next", "previous", "results"}) is shown: a table
    with one row per item, `row(item)` giving its cells, or `empty` when there are no items."""

    columns: list[str]
    row: Callable[[dict], list]
    empty: str


def emit(
    out: Output,
    data: Any,
    *,
    text: str | None = None,
    table: ListTable | None = None,
    page: int | None = None,
    show: Callable[[Output, Any], None] | None = None,
) -> int:
    """Print a command's result and return EXIT_OK.

    With --json, `data` (the API's JSON) exactly. Otherwise the human form, whichever is given:
    `text`, one line of rich markup; `table`, for a page of a list (then `page` is the --page asked
    for, to say on stderr where more is); `show(out, data)`, for anything longer.
    With none of them, only --json prints anything.
    """
    if out.as_json:
        out.json(data)
    elif text is not None:
        out.print(text)
    elif table is not None:
        if not data["results"]:
            out.print(table.empty)
            return EXIT_OK
        out.table(table.columns, [table.row(item) for item in data["results"]])
        _page_note(out, data, page)
    elif show is not None:
        show(out, data)
    return EXIT_OK


def _page_note(out: Output, body: dict, page: int | None) -> None:
    """On stderr, which page of how many items this was, when the list has more than one page."""
    if not (body.get("next") or body.get("previous")):
        return
    shown = len(body["results"])
    total = body.get("count_text") or body["count"]  # the runs list says "10 000+" past its count threshold
    page = page or 1
    out.note(
        f"page {page}: {shown} of {total}; use --page {page + 1} for more"
        if body.get("next")
        else f"page {page}: {shown} of {total}"
    )
