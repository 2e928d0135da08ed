"""Progress on stderr: a bar while a file uploads, and a run's status while the client waits for it.

Rich draws bars only on a terminal; elsewhere (CI, a pipe) a run's status is a line each time it
changes, and an upload shows nothing until its "Uploaded ..." line.
"""

from __future__ import annotations

import sys

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mlopen.client.client import FINISHED
from mlopen.client.output import Output


class UploadBar:
    """An upload progress bar on stderr; pass it as the client's `progress` callback."""

    def __init__(self, out: Output, label: str, total: int):
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=out.err,
            transient=True,
        )
        self.task = self.progress.add_task(label, total=total)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, sent: int, total: int | None) -> None:
        self.progress.update(self.task, completed=sent, total=total)


class RunStatusLine:
    """A run's status and progress on stderr, with the run's log lines printed above it."""

    def __init__(self, out: Output, run_id: int):
        self.run_id = run_id
        self.shown = None  # (status, message, fraction) last drawn
        self.progress = None
        self.task = None
        if out.err.is_terminal:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=out.err,
                transient=True,
            )
            self.task = self.progress.add_task(f"run {run_id}", total=None)

    def start(self) -> None:
        if self.progress:
            self.progress.start()

    def stop(self) -> None:
        if self.progress:
            self.progress.stop()

    def print_log_line(self, text: str) -> None:
        """One line of the run's log (through the bar's console, so the bar is redrawn below it)."""
        if self.progress:
            self.progress.console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
        else:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            sys.stderr.flush()

    def show(self, run: dict) -> None:
        progress = run.get("progress") or {}
        fraction, message = progress.get("fraction"), progress.get("message")
        status = run["status"]
        label = f"run {self.run_id} {status}" + (f": {message}" if message else "")
        if self.progress:
            self.progress.update(
                self.task, description=label, total=1.0 if fraction is not None else None, completed=fraction or 0
            )
        elif status not in FINISHED and (status, message, fraction) != self.shown:
            # No terminal to draw a bar on: a line each time the status or progress changes.
            percent = f" {fraction:.0%}" if fraction is not None else ""
            sys.stderr.write(f"[{label}{percent}]\n")
            sys.stderr.flush()
        self.shown = (status, message, fraction)
