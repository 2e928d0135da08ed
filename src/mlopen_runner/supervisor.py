"""Parent side: start the child, stream its output, enforce limits, collect the outcome.

One loop does everything on the calling thread: it waits at most POLL_INTERVAL_S for output or
events, then checks memory, the clock and the caller's cancel flag, so a child is never left
running unwatched. The parent never unpickles what the child wrote.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil

from mlopen_runner import sandbox
from mlopen_runner.job import (
    ERROR_FILE, EVENTS_FD_VARIABLE, JOB_FILE, MB, MODEL_FILE, MODEL_MANIFEST_FILE, OUTPUT_FILES, PARAMS_FILE,
    RESULT_FILE, Job, Outcome, memory_limit_message,
)

POLL_INTERVAL_S = 0.1  # memory checks; also the longest the loop sleeps
TICK_INTERVAL_S = 0.25
OUTPUT_INTERVAL_S = 0.5
# After the child exits, how long to keep reading pipes that a process which escaped the kill
# might still hold open.
DRAIN_TIMEOUT_S = 2.0
_READ_SIZE = 64 * 1024
# Event lines from the SDK are short; a longer unterminated line is not ours and is dropped.
_MAX_EVENT_LINE_BYTES = 64 * 1024
_THREAD_CAP_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# The folder holding mlopen_runner and mlopenapp, so the child can import both.
_RUNNER_ROOT = str(Path(__file__).resolve().parent.parent)


class Callbacks(Protocol):
    def output(self, text: str) -> None: ...

    def event(self, event: dict[str, Any]) -> None: ...

    def tick(self) -> bool: ...


class _NoCallbacks:
    def output(self, text: str) -> None:
        pass

    def event(self, event: dict[str, Any]) -> None:
        pass

    def tick(self) -> bool:
        return False


@dataclass(frozen=True)
class _Stop:
    """Why the supervisor ended the child before it finished."""
    status: str
    error: str


def execute(job: Job, callbacks: Callbacks | None = None) -> Outcome:
    """Run `job` in a fresh child process; blocks until it is over."""
    _prepare_work_dir(job)
    supervision = _Supervision(job, callbacks or _NoCallbacks())
    try:
        supervision.start()
    except OSError as exc:
        return Outcome(status="failed", error=f"Could not start the pipeline process: {exc}")
    try:
        supervision.watch()
    finally:
        supervision.finish()
    return supervision.outcome()


def child_environment(job: Job, events_fd: int) -> dict[str, str]:
    """Built from nothing, so no secret of the web process (DATABASE_URL, DJANGO_*) reaches the pipeline."""
    python = job.python or sys.executable
    return {
        "PATH": os.pathsep.join([os.path.dirname(python), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": job.work_dir,
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join(_runner_paths(job)),
        "PYTHONUNBUFFERED": "1",
        # Keeps __pycache__ folders out of the stored pipeline folders.
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        **{variable: "2" for variable in _THREAD_CAP_VARIABLES},
        EVENTS_FD_VARIABLE: str(events_fd),
    }


def _runner_paths(job: Job) -> list[str]:
    # Another interpreter (a pipeline's own venv) gets the runner only from the SDK overlay in
    # extra_pythonpath: our root may be the platform's site-packages, and PYTHONPATH entries
    # would shadow the packages installed in that venv.
    own_root = [_RUNNER_ROOT] if job.python is None else []
    return [*job.extra_pythonpath, *own_root]


def _prepare_work_dir(job: Job) -> None:
    os.makedirs(job.work_dir, exist_ok=True)
    for name in OUTPUT_FILES:  # a reused folder must not pass off an earlier run's files as this one's
        Path(job.work_dir, name).unlink(missing_ok=True)
    Path(job.work_dir, JOB_FILE).write_text(job.to_json())


class _Supervision:
    def __init__(self, job: Job, callbacks: Callbacks) -> None:
        self.job = job
        self.callbacks = callbacks
        self.log = _LogCapture(job.max_log_bytes)
        self.events = _EventReader()
        self.selector = selectors.DefaultSelector()
        self.stop: _Stop | None = None
        self.peak_rss_mb = 0.0
        self.pending_output = ""
        self.started = time.monotonic()
        self.ended = self.started

    def start(self) -> None:
        # stdout and stderr share one pipe so the log keeps their interleaving.
        output_read, output_write = os.pipe()
        events_read, events_write = os.pipe()
        python = self.job.python or sys.executable
        command = [python, "-m", "mlopen_runner.child", os.path.join(self.job.work_dir, JOB_FILE)]
        try:
            self.process = subprocess.Popen(
                sandbox.wrap_command(command, self.job, python, _runner_paths(self.job)),
                cwd=self.job.work_dir, env=child_environment(self.job, events_write),
                stdin=subprocess.DEVNULL, stdout=output_write, stderr=output_write,
                pass_fds=(events_write,), start_new_session=True,  # its own group, killed as one
            )
        except OSError:
            os.close(output_read)
            os.close(events_read)
            raise
        finally:
            os.close(output_write)
            os.close(events_write)
        self.started = time.monotonic()
        self.watched = psutil.Process(self.process.pid)
        self.selector.register(output_read, selectors.EVENT_READ, self._on_output)
        self.selector.register(events_read, selectors.EVENT_READ, self._on_events)

    def watch(self) -> None:
        limits, tick, flush = _Every(POLL_INTERVAL_S), _Every(TICK_INTERVAL_S), _Every(OUTPUT_INTERVAL_S)
        while self.stop is None and self.process.poll() is None:
            self._wait_for_activity(POLL_INTERVAL_S)
            now = time.monotonic()
            if limits.due(now):
                self.stop = self._over_limit(now)
            if self.stop is None and tick.due(now) and self.callbacks.tick():
                self.stop = _Stop("cancelled", "Run was cancelled")
            if flush.due(now):
                self._flush_output()
        self.ended = time.monotonic()

    def finish(self) -> None:
        """Kill whatever is left of the child's tree, read the rest of its output, close the pipes."""
        self._kill_tree()
        self.process.wait()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.selector.get_map() and time.monotonic() < deadline:
            self._read_ready(deadline - time.monotonic())
        for fd in list(self.selector.get_map()):
            self._close(fd)
        self.pending_output += self.log.finish()
        self._flush_output()

    def outcome(self) -> Outcome:
        outcome = Outcome(status="failed", exit_code=self.process.returncode,
                          duration_s=round(self.ended - self.started, 3), peak_rss_mb=round(self.peak_rss_mb, 1),
                          log_truncated_bytes=self.log.dropped)
        if self.stop is not None:
            outcome.status, outcome.error = self.stop.status, self.stop.error
            return outcome
        outcome.error = _error_reported_by_child(self.job) or _error_from_exit_status(self.process.returncode)
        if outcome.error is None:
            try:
                _collect_outputs(self.job, outcome)
                outcome.status = "succeeded"
            except _OutputError as exc:
                outcome.error = str(exc)
        return outcome

    def _wait_for_activity(self, timeout: float) -> None:
        if self.selector.get_map():
            self._read_ready(timeout)
            return
        # Both pipes are closed, so the child is exiting: wake the moment it has, not a poll later.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)

    def _read_ready(self, timeout: float) -> None:
        for key, _ in self.selector.select(max(timeout, 0)):
            chunk = os.read(key.fd, _READ_SIZE)
            if chunk:
                key.data(chunk)
            else:
                self._close(key.fd)

    def _close(self, fd: int) -> None:
        self.selector.unregister(fd)
        os.close(fd)

    def _on_output(self, chunk: bytes) -> None:
        self.pending_output += self.log.feed(chunk)

    def _on_events(self, chunk: bytes) -> None:
        for event in self.events.feed(chunk):
            self.callbacks.event(event)

    def _flush_output(self) -> None:
        if self.pending_output:
            text, self.pending_output = self.pending_output, ""
            self.callbacks.output(text)

    def _over_limit(self, now: float) -> _Stop | None:
        return limit_exceeded(self, now)

    def _tree_rss_mb(self) -> float:
        total = 0
        for process in [self.watched, *self._descendants()]:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total / MB

    def _descendants(self) -> list[psutil.Process]:
        try:
            return self.watched.children(recursive=True)
        except psutil.Error:
            return []

    def _kill_tree(self) -> None:
        # The group kill reaches everything the child started; descendants are killed one by
        # one too, because a grandchild may have left the group with setsid().
        descendants = self._descendants()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for process in descendants:
            with contextlib.suppress(psutil.Error):
                process.kill()


class _Every:
    """Says when an interval has passed since it last said so."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.next = time.monotonic() + interval

    def due(self, now: float) -> bool:
        if now < self.next:
            return False
        self.next = now + self.interval
        return True


class _LogCapture:
    """Streams the first half of the byte budget and keeps the last half until the end."""

    def __init__(self, max_bytes: int) -> None:
        self.head_room = max_bytes // 2
        self.tail_limit = max_bytes - self.head_room
        self.tail = bytearray()
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.dropped = 0

    def feed(self, chunk: bytes) -> str:
        """Text that can be shown now."""
        head, rest = chunk[:self.head_room], chunk[self.head_room:]
        self.head_room -= len(head)
        self.tail += rest
        self._trim_tail()
        return self.decoder.decode(head)

    def finish(self) -> str:
        text = self.decoder.decode(b"", final=True)
        if self.dropped:
            text += f"\n[... {self.dropped} bytes of output dropped ...]\n"
        return text + self.tail.decode("utf-8", "replace")

    def _trim_tail(self) -> None:
        excess = len(self.tail) - self.tail_limit
        if excess <= 0:
            return
        # Also drop UTF-8 continuation bytes so the kept tail starts on a whole character.
        while excess < len(self.tail) and self.tail[excess] & 0xC0 == 0x80:
            excess += 1
        del self.tail[:excess]
        self.dropped += excess


class _EventReader:
    """Splits the events pipe into JSON lines and keeps the well-formed progress/metric events."""

    def __init__(self) -> None:
        self.partial = b""

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        if len(self.partial) > _MAX_EVENT_LINE_BYTES:
            self.partial = b""
        return [event for event in map(_parse_event, lines) if event is not None]


def _parse_event(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if isinstance(event, dict) and event.get("type") in ("progress", "metric"):
        return event
    return None


class _OutputError(Exception):
    pass


def _collect_outputs(job: Job, outcome: Outcome) -> None:
    if job.kind == "run":
        outcome.result = _read_output(Path(job.work_dir, RESULT_FILE), job.max_result_bytes)
    elif job.kind == "params":
        outcome.params = _read_output(Path(job.work_dir, PARAMS_FILE), job.max_result_bytes)
    elif Path(job.work_dir, MODEL_FILE).exists():
        outcome.model_path = os.path.join(job.work_dir, MODEL_FILE)
        outcome.model_manifest = _model_manifest(Path(job.work_dir, MODEL_MANIFEST_FILE))


# model.json holds names only; anything bigger was not written by the child's own code.
_MAX_MANIFEST_BYTES = 1 * MB


def _model_manifest(path: Path) -> dict[str, Any] | None:
    """The names the child listed beside model.pkl, or None when absent or malformed (pipeline code
    could have overwritten it): the model is still kept, only its names are missing."""
    try:
        manifest = _read_output(path, _MAX_MANIFEST_BYTES)
    except (_OutputError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    names = {key: manifest.get(key) for key in ("models", "args")}
    if not all(isinstance(value, list) and all(isinstance(n, str) for n in value) for value in names.values()):
        return None
    return {"label": str(manifest.get("label") or ""), **names}


def _read_output(path: Path, max_bytes: int) -> Any:
    if not path.exists():
        raise _OutputError(f"Pipeline process exited without writing {path.name}")
    size = path.stat().st_size
    if size > max_bytes:
        raise _OutputError(f"Result is {_size(size)}, over the {_size(max_bytes)} limit")
    return json.loads(path.read_text())


def _error_reported_by_child(job: Job) -> str | None:
    try:
        error = _read_output(Path(job.work_dir, ERROR_FILE), job.max_result_bytes)
    except (_OutputError, ValueError):
        return None  # absent or unreadable: the exit status tells what happened
    if not isinstance(error, dict):
        return None
    kind, message = str(error.get("type") or "Error"), str(error.get("message") or "")
    return f"{kind}: {message}" if message else kind


def _error_from_exit_status(returncode: int) -> str | None:
    signal_number = sandbox.signal_from_exit_status(returncode)
    if signal_number is not None:
        return f"Pipeline process was killed by signal {signal_number} ({_signal_name(signal_number)})"
    if returncode != 0:
        return f"Pipeline process exited with status {returncode}"
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def limit_exceeded(watch, now: float) -> _Stop | None:
    """The time and memory checks both the cold supervisor and the warm pool apply, with one wording.

    ``watch`` has ``job``, ``started``, ``peak_rss_mb`` and ``_tree_rss_mb()``.
    """
    elapsed = now - watch.started
    if watch.job.timeout_s is not None and elapsed > watch.job.timeout_s:
        return _Stop("failed", f"Run timed out after {_seconds(elapsed)} s (limit {_seconds(watch.job.timeout_s)} s)")
    rss_mb = watch._tree_rss_mb()
    watch.peak_rss_mb = max(watch.peak_rss_mb, rss_mb)
    if watch.job.memory_mb is not None and rss_mb > watch.job.memory_mb:
        return _Stop("failed", memory_limit_message(watch.job.memory_mb))
    return None


def _seconds(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _size(byte_count: int) -> str:
    for unit, size in (("MB", MB), ("KB", 1024)):
        if byte_count >= size:
            return f"{byte_count / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{byte_count} bytes"
