"""Parent side, while a job runs: watch the pipeline process, enforce limits, build the outcome.

A job runs either in a child started for it (mlopen_runner.supervisor) or in a warm process that
serves one job after another (mlopen_runner.warm_pool). The parent's work while the job runs is
the same for both, so both are subclasses of JobWatch: one loop on the calling thread waits at
most POLL_INTERVAL_S for output or events, then checks the clock, the memory of the process tree
and the caller's cancel flag, so a job is never left running unwatched. The subclasses only add
how the process is started, how the job's end is recognised and what happens to the process
afterwards. The parent never unpickles what the child wrote.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psutil

from mlopen_runner import images, sandbox, untrusted
from mlopen_runner.job import (
    ERROR_FILE,
    MB,
    MODEL_FILE,
    MODEL_MANIFEST_FILE,
    PARAMS_FILE,
    RESULT_FILE,
    Job,
    Outcome,
    disk_full_message,
    disk_limit_message,
    disk_nearly_full,
    is_disk_full,
    memory_limit_message,
)

POLL_INTERVAL_S = 0.1  # memory checks; also the longest the loop sleeps
TICK_INTERVAL_S = 0.25
OUTPUT_INTERVAL_S = 0.5
# After a kill, how long to keep reading pipes that a process which escaped the kill might still
# hold open.
DRAIN_TIMEOUT_S = 2.0
READ_SIZE = 64 * 1024
# How often the size of the job's writable folder is measured against its disk budget.
DISK_INTERVAL_S = 0.5
# Files and folders a job may create in all (a walk of more would itself be the cost).
MAX_FILES = 100_000
# Event lines from the SDK are short; a longer unterminated line is not ours and is dropped.
_MAX_EVENT_LINE_BYTES = 64 * 1024


class Callbacks(Protocol):
    """What the caller of a run is told while it runs; all calls come from the calling thread."""

    def output(self, text: str) -> None:
        """New log text; called at least every OUTPUT_INTERVAL_S while output arrives."""

    def event(self, event: dict[str, Any]) -> None:
        """A progress or metric event, as it arrives."""

    def tick(self) -> bool:
        """Called about every TICK_INTERVAL_S; True asks for the run to be cancelled."""


class NoCallbacks:
    """Callbacks for a caller that wants only the outcome."""

    def output(self, text: str) -> None:
        pass

    def event(self, event: dict[str, Any]) -> None:
        pass

    def tick(self) -> bool:
        return False


@dataclass(frozen=True)
class Stop:
    """Why the parent ended the job before it finished: the outcome's status and error."""

    status: str
    error: str


class ProcessTree:
    """A started pipeline process, leader of a session of its own, and what it started.

    Outlives one job for a warm process: the pool kills it between jobs too.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        # The processes the last scan found, the started one first. Scanning walks all of /proc;
        # reading the RSS of processes already found is cheap enough for the end of every job.
        self.known: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):  # gone already (bwrap refused to start): its exit says why
            self.known = [psutil.Process(process.pid)]
        self.killed = False

    def descendants(self) -> list[psutil.Process]:
        try:
            return self.known[0].children(recursive=True)
        except (psutil.Error, IndexError):
            return []

    def rss_mb(self, rescan: bool = True) -> float:
        """RSS of the tree in MB; without `rescan`, of the processes the last scan found."""
        if rescan:  # the pipeline may have started processes since
            self.known = self.known[:1] + self.descendants()
        total = 0
        for process in self.known:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total / MB

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the processes the last scan found have used."""
        total = 0.0
        for process in self.known:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def kill(self) -> None:
        """SIGKILL the whole tree and reap the started process. Only the first call does anything."""
        if self.killed:
            return
        self.killed = True
        # The group kill reaches everything the process started; descendants are killed one by
        # one too, because a grandchild may have left the group with setsid().
        descendants = self.descendants()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for process in descendants:
            with contextlib.suppress(psutil.Error):
                process.kill()
        self.process.wait()

    def kill_descendants(self) -> None:
        """Kill what the started process started, and leave it running."""
        for process in self.descendants():
            with contextlib.suppress(psutil.Error):
                process.kill()


class JobWatch:
    """One job in one pipeline process, watched from the parent until it is over.

    Owns what the parent does while a job runs: reading the process's pipes (output into the log,
    its head streamed and its tail kept within job.max_log_bytes; events to the callbacks), the
    periodic output flush, cancelling via tick(), the time and memory limits of the process tree;
    and afterwards the Outcome, from the stop, the process's end and the job's folder.

    By default the job ends when its process exits, as a cold child's does; a subclass whose
    process outlives its jobs overrides over() and judge(). A subclass sets `tree`, listen()s to
    the pipes and resets `started` when the job starts, then calls watch(). After it, the subclass
    decides what becomes of the process (kill the tree and drain() the pipes, or keep it), then
    calls finish_output() and outcome().
    """

    tree: ProcessTree

    def __init__(self, job: Job, callbacks: Callbacks) -> None:
        self.job = job
        self.callbacks = callbacks
        self.log = _LogCapture(job.max_log_bytes)
        self.events = _EventReader()
        self.selector = selectors.DefaultSelector()
        self.stop: Stop | None = None
        self.peak_rss_mb = 0.0
        self.pending_output = ""
        self.started = self.ended = time.monotonic()
        self.disk_check = _Every(DISK_INTERVAL_S)
        # What the parent keeps of the job (a run's images) goes beside this folder, which the
        # pipeline process cannot write in (a warm run's own folder is inside its process's).
        self.keep_beside = job.work_dir

    def listen(self, fd: int, handler: Callable[[bytes], None]) -> None:
        """Give what arrives on `fd` to `handler` while the job is watched."""
        self.selector.register(fd, selectors.EVENT_READ, handler)

    def over(self) -> bool:
        """Whether the job has ended on its own."""
        return self.tree.process.poll() is not None

    def judge(self, outcome: Outcome) -> None:
        """Set the error (None for success) and exit code of a job that ended on its own.

        The outcome comes with the process's exit code; error.json, written by the job's own
        process, explains a failure better than the exit status does. A process that failed
        without one on a full disk could not write it: the full disk is the news, not "status 1".
        """
        outcome.error = self.reported_error()
        # Only an exit of its own: a process killed by a signal did not die of a failed write.
        code = outcome.exit_code
        exited_badly = code not in (0, None) and sandbox.signal_from_exit_status(code) is None
        if outcome.error is None and exited_badly:
            outcome.error = self.disk_full_error()
        if outcome.error is None and code is not None:  # a status to read: the process was reaped
            outcome.error = _error_from_exit_status(code)

    def disk_full_error(self) -> str | None:
        """Why the job's writes failed if the disk holding its folder is (all but) full: the job's
        own budget when it used all of it, else the host's disk. None while there is room."""
        if not disk_nearly_full(self.job.work_dir):
            return None
        over_budget = self.check_disk(self.job.disk_mb) if self.job.disk_mb is not None else None
        return over_budget.error if over_budget is not None else disk_full_message(self.job.work_dir)

    def pipe_closed(self, fd: int) -> None:
        """`fd` reached its end and is no longer listened to."""

    def watch(self) -> None:
        """Read, check and flush until the job is over or stopped; `stop` says why if stopped."""
        limits, tick, flush = _Every(POLL_INTERVAL_S), _Every(TICK_INTERVAL_S), _Every(OUTPUT_INTERVAL_S)
        while self.stop is None and not self.over():
            self.wait_for_activity(POLL_INTERVAL_S)
            # A job that is over is neither measured nor cancelled: its own end is its outcome,
            # and the caller's tick may be slow (a database query).
            if self.over():
                break
            now = time.monotonic()
            if limits.due(now):
                self.stop = self.check_limits(now)
            if self.stop is None and tick.due(now) and not self.over() and self.callbacks.tick():
                self.stop = Stop("cancelled", "Run was cancelled")
            if flush.due(now):
                self.flush_output()
        self.ended = time.monotonic()

    def wait_for_activity(self, timeout: float) -> None:
        if self.selector.get_map():
            self.read_ready(timeout)
            return
        # Every pipe is closed, so the process is exiting: wake the moment it has, not a poll later.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.tree.process.wait(timeout)

    def read_ready(self, timeout: float) -> bool:
        """Read what the pipes hold, waiting up to `timeout`; True if anything was read (an end of file too)."""
        got = False
        for key, _ in self.selector.select(max(timeout, 0)):
            try:
                chunk = os.read(key.fd, READ_SIZE)
            except BlockingIOError:  # a non-blocking pipe (a warm process's) that another read emptied
                continue
            got = True
            if chunk:
                key.data(chunk)
            else:
                self.selector.unregister(key.fd)
                self.pipe_closed(key.fd)
        return got

    def drain(self) -> None:
        """After a kill: what the dead tree left in the pipes belongs to this job."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.selector.get_map() and time.monotonic() < deadline:
            self.read_ready(deadline - time.monotonic())

    def on_output(self, chunk: bytes) -> None:
        self.pending_output += self.log.feed(chunk)

    def on_events(self, chunk: bytes) -> None:
        for event in self.events.feed(chunk):
            self.callbacks.event(event)

    def flush_output(self) -> None:
        if self.pending_output:
            text, self.pending_output = self.pending_output, ""
            self.callbacks.output(text)

    def finish_output(self) -> None:
        """Hand over the rest of the log, the kept tail included; nothing is read after this."""
        self.pending_output += self.log.finish()
        self.flush_output()

    def check_limits(self, now: float) -> Stop | None:
        """The job's timeout, then the RSS of the process tree against its memory limit."""
        elapsed = now - self.started
        if self.job.timeout_s is not None and elapsed > self.job.timeout_s:
            return Stop("failed", f"Run timed out after {_seconds(elapsed)} s (limit {_seconds(self.job.timeout_s)} s)")
        rss_mb = self.tree.rss_mb()
        self.peak_rss_mb = max(self.peak_rss_mb, rss_mb)
        if self.job.memory_mb is not None and rss_mb > self.job.memory_mb:
            return Stop("failed", memory_limit_message(self.job.memory_mb))
        if self.job.disk_mb is not None and self.disk_check.due(now):
            return self.check_disk(self.job.disk_mb)
        return None

    def writable_root(self) -> str:
        """The folder holding everything the process can write (the job's folder and its /tmp)."""
        return self.job.work_dir

    def check_disk(self, disk_mb: int) -> Stop | None:
        """The writable folder's size against the job's disk budget (RLIMIT_FSIZE bounds one file
        between two checks; the files written between checks can overshoot the budget by that much)."""
        used, entries = untrusted.disk_usage(self.writable_root(), MAX_FILES)
        if entries > MAX_FILES:
            return Stop("failed", f"Run created more than {MAX_FILES} files and folders (the limit)")
        if used > disk_mb * MB:
            return Stop("failed", disk_limit_message(disk_mb))
        return None

    def reported_error(self) -> str | None:
        """What error.json in the job's folder says, as "Type: message"; None if there is none."""
        return _error_reported_by_child(self.job)

    def outcome(self) -> Outcome:
        outcome = Outcome(
            status="failed",
            exit_code=self.tree.process.returncode,
            duration_s=round(self.ended - self.started, 3),
            peak_rss_mb=round(self.peak_rss_mb, 1),
            log_truncated_bytes=self.log.dropped,
        )
        if self.stop is not None:
            outcome.status, outcome.error = self.stop.status, self.stop.error
            return outcome
        self.judge(outcome)
        if outcome.error is None:
            try:
                self.collect_outputs(outcome)
                outcome.status = "succeeded"
            except OutputError as exc:
                outcome.error = str(exc)
        return outcome

    def collect_outputs(self, outcome: Outcome, result_text: str | None = None) -> None:
        """Read what the job left in its folder (OutputError if it is unusable); `result_text`: the
        run's result.json as a warm process sent it instead of the file."""
        _collect_outputs(self.job, outcome, self.keep_beside, result_text)


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
        head, rest = chunk[: self.head_room], chunk[self.head_room :]
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


def _collect_outputs(job: Job, outcome: Outcome, keep_beside: str, result_text: str | None = None) -> None:
    """Read what the job left in its folder, trusting none of it (mlopen_runner.untrusted). A run's
    `result_text` (a warm process's reply) stands for its result.json, read with the same checks."""
    if job.kind == "run":
        if result_text is None:
            outcome.result = _read_json(job.work_dir, RESULT_FILE, job.max_result_bytes)
        else:
            outcome.result = _parse_text(RESULT_FILE, result_text, job.max_result_bytes)
        if isinstance(outcome.result, dict):
            images.collect(job, outcome, images.private_images_path(keep_beside))
    elif job.kind == "params":
        outcome.params = _read_json(job.work_dir, PARAMS_FILE, job.max_result_bytes)
    elif untrusted.exists(job.work_dir, MODEL_FILE):
        outcome.model_path = _copy_model_out(job)
        outcome.model_manifest = _model_manifest(job.work_dir)


def private_model_path(work_dir: str) -> str:
    """Where the parent keeps its own copy of a trained model: beside the job's folder, not in it,
    so the pipeline process can neither see nor replace it. The caller removes it once stored."""
    folder, name = os.path.split(os.path.abspath(work_dir))
    return os.path.join(folder, f".{name}.{MODEL_FILE}")


def _copy_model_out(job: Job) -> str:
    destination = private_model_path(job.work_dir)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(destination)  # an earlier attempt's
    limit = (job.disk_mb or _DEFAULT_MAX_MODEL_MB) * MB
    try:
        untrusted.copy_out(job.work_dir, MODEL_FILE, destination, limit)  # removes a partial copy
    except OSError as exc:
        why = disk_full_message(os.path.dirname(destination)) if is_disk_full(exc) else str(exc)
        raise OutputError(f"The trained model could not be kept: {why}") from exc
    except untrusted.UntrustedFileError as exc:
        raise OutputError(f"The trained model could not be kept: {exc}") from exc
    return destination


# Without a disk budget, a model is still not copied past this.
_DEFAULT_MAX_MODEL_MB = 4096
# model.json holds names only; anything bigger was not written by the child's own code.
_MAX_MANIFEST_BYTES = 1 * MB


def _model_manifest(work_dir: str) -> dict[str, Any] | None:
    """The names the child listed beside model.pkl, or None when absent or malformed (pipeline code
    could have overwritten it): the model is still kept, only its names are missing."""
    try:
        manifest = _read_json(work_dir, MODEL_MANIFEST_FILE, _MAX_MANIFEST_BYTES)
    except OutputError:
        return None
    if not isinstance(manifest, dict):
        return None
    names = {key: manifest.get(key) for key in ("models", "args")}
    if not all(isinstance(value, list) and all(isinstance(n, str) for n in value) for value in names.values()):
        return None
    return {"label": str(manifest.get("label") or ""), **names}


class OutputError(Exception):
    """An output file of the job is missing or malformed; str() says what was wrong."""


def _read_json(work_dir: str, name: str, max_bytes: int) -> Any:
    try:
        data = untrusted.read_bytes(work_dir, name, max_bytes)
    except untrusted.UntrustedFileError as exc:
        raise OutputError(str(exc)) from exc
    return _parse_json(data, name)


def _parse_text(name: str, text: str, max_bytes: int) -> Any:
    data = text.encode()
    try:
        untrusted.check_size(name, len(data), max_bytes)
    except untrusted.UntrustedFileError as exc:
        raise OutputError(str(exc)) from exc
    return _parse_json(data, name)


def _parse_json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise OutputError(f"The pipeline's output {name} is not valid JSON ({str(exc)[:200]})") from exc


def _error_reported_by_child(job: Job) -> str | None:
    try:
        error = _read_json(job.work_dir, ERROR_FILE, _MAX_ERROR_FILE_BYTES)
    except OutputError:
        return None  # absent or unreadable: the exit status tells what happened
    if not isinstance(error, dict):
        return None
    kind, message = str(error.get("type") or "Error")[:200], str(error.get("message") or "")[:_MAX_ERROR_CHARS]
    return f"{kind}: {message}" if message else kind


# error.json holds a message and a traceback; the message kept is at most this long.
_MAX_ERROR_FILE_BYTES = 4 * MB
_MAX_ERROR_CHARS = 4000


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


def _seconds(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")
