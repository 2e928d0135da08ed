"""`mlopen run --wait` tails the run's log on stderr: every character, in order, lines whole."""

from __future__ import annotations

from mlopen.client.follow import RunWatcher
from mlopen.client.output import Output


class _Logs:
    """A client whose run log grows by one chunk per poll."""

    def __init__(self, chunks: list[str]):
        self.chunks = chunks
        self.served = 0

    def logs(self, run_id: int, offset: int = 0):
        text = "".join(self.chunks[: self.served + 1])
        self.served += 1
        return text[offset:], len(text), "running"


def _tail(chunks: list[str], capsys) -> str:
    client = _Logs(chunks)
    with RunWatcher(client, Output(), run_id=7) as watcher:
        for _ in chunks:
            watcher.update({"status": "running", "progress": None})
    return capsys.readouterr().err


def test_a_line_written_in_two_halves_is_shown_whole(capsys):
    err = _tail(
        ["line 1 first half ... ", "second half of line 1\nline 2 first half ... ", "second half of line 2\n"], capsys
    )

    assert "line 1 first half ... second half of line 1\n" in err
    assert "line 2 first half ... second half of line 2\n" in err


def test_the_last_words_without_a_newline_are_shown_at_the_end(capsys):
    err = _tail(["action: exit\n", "unflushed text before dying"], capsys)

    assert err.index("action: exit") < err.index("unflushed text before dying")
