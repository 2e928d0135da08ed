"""Following a run's log: tailed on stderr under its status while `--wait` waits (RunWatcher), or
printed on stdout by `mlopen runs logs [--follow]` (print_log).
"""

from __future__ import annotations

import sys
import time

from mlopen.client.client import FINISHED, Client
from mlopen.client.output import Output
from mlopen.client.progress import RunStatusLine


class RunWatcher:
    """Shows a run's progress and log on stderr while Client.wait polls it (`on_update=watcher.update`).

    The log is shown in whole lines: a line that arrives in pieces waits for its end.
    """

    def __init__(self, client: Client, out: Output, run_id: int):
        self.client = client
        self.run_id = run_id
        self.offset = 0
        self.pending = ""  # the start of a line whose end has not arrived yet
        self.status_line = RunStatusLine(out, run_id)

    def __enter__(self):
        self.status_line.start()
        return self

    def __exit__(self, *exc):
        self.status_line.stop()
        # The log's last words may have no newline (a pipeline that died mid-line): show them too.
        if self.pending:
            self.status_line.print_log_line(self.pending)
        self.pending = ""

    def update(self, run: dict) -> None:
        text, self.offset, _status = self.client.logs(self.run_id, self.offset)
        if text:
            lines = (self.pending + text).splitlines(keepends=True)
            self.pending = lines.pop() if lines and not lines[-1].endswith("\n") else ""
            for line in lines:
                # A line ended by another separator (a lone \r, as a redrawn progress line) is not shown.
                if line.endswith("\n"):
                    self.status_line.print_log_line(line)
        self.status_line.show(run)


def print_log(client: Client, run_id: int, follow: bool) -> str:
    """Print a run's log on stdout; with `follow`, until the run finishes. Returns its last status."""
    offset = 0
    delay = 0.2
    while True:
        text, offset, status = client.logs(run_id, offset)
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
        if not follow or status in FINISHED or not status:
            return status
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
