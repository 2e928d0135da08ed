"""A run's log as append-only chunks (``RunLogChunk``), read by character offset.

The worker's recorder (``execution.RunRecorder``) hands each flush's new text to
``runs.lifecycle`` as a :class:`Chunk`; lifecycle writes it in the same transaction as the run's
heartbeat or outcome (:func:`append`). Readers never load the whole log by accident: the API's
``logs/?offset=`` reads from an offset (:func:`read_from`), the live run page its tail (:func:`tail`).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Subquery, Value
from django.db.models.functions import Coalesce

from mlopen.runs.models import RunLogChunk


@dataclass(frozen=True)
class Chunk:
    """Text to append to run ``run_id``'s log as chunk number ``seq``, starting at character ``offset``."""

    run_id: int
    seq: int
    offset: int
    text: str


def append(chunk: Chunk | None) -> None:
    """Store ``chunk`` (inside the caller's transaction). Writing the same chunk twice (a retry
    after a commit whose answer was lost) keeps the first: ``(run, seq)`` is unique."""
    if chunk is None or not chunk.text:
        return
    RunLogChunk.objects.bulk_create(
        [RunLogChunk(run_id=chunk.run_id, seq=chunk.seq, offset=chunk.offset, text=chunk.text)],
        ignore_conflicts=True,
    )


def next_chunk(run_id: int, text: str) -> Chunk:
    """A chunk that appends ``text`` after whatever run ``run_id``'s log holds now (for a note
    written outside the worker's recorder, such as ``lifecycle.put_back``'s)."""
    last = RunLogChunk.objects.filter(run_id=run_id).order_by("-seq").values_list("seq", "offset", "text").first()
    if last is None:
        return Chunk(run_id, 0, 0, text)
    seq, offset, previous = last
    return Chunk(run_id, seq + 1, offset + len(previous), text)


def size(run_id: int) -> int:
    """How many characters the log holds (one indexed row read)."""
    last = RunLogChunk.objects.filter(run_id=run_id).order_by("-seq").values_list("offset", "text").first()
    return 0 if last is None else last[0] + len(last[1])


def read_from(run_id: int, offset: int) -> tuple[str, int]:
    """The log from character ``offset`` on, and the offset to ask for next; one query that reads
    only the chunks from the one holding character ``offset`` on."""
    holding = RunLogChunk.objects.filter(run_id=run_id, offset__lte=offset).order_by("-offset").values("offset")[:1]
    rows = list(
        RunLogChunk.objects.filter(run_id=run_id, offset__gte=Coalesce(Subquery(holding), Value(0)))
        .order_by("seq")
        .values_list("offset", "text")
    )
    if not rows:
        return "", offset
    first_offset = rows[0][0]
    text = "".join(text for _, text in rows)
    end = first_offset + len(text)
    return text[max(0, offset - first_offset) :], max(offset, end)


def tail(run_id: int, chars: int) -> tuple[str, int]:
    """The last ``chars`` characters of the log, and how many characters come before them."""
    end = size(run_id)
    start = max(0, end - chars)
    text, _ = read_from(run_id, start)
    return text, start
