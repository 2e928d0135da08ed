"""Blank processes: sandboxed pipeline processes that imported a runtime's heavy packages ahead of need.

A cold run pays for starting Python and importing numpy, pandas, scikit-learn... (about a second
here) before its pipeline's own code runs. A worker keeps, per runtime it has served (or was told
of at start), `size` *blank* warm processes (mlopen_runner.warm with MLOPEN_WARM_PREIMPORT) that have
already done those imports, hold no pipeline code and no user data, and wait. A cold run takes one
(mlopen_runner.warm_pool): the worker copies the run's control folder and model into the process's
read-only inputs folder and sends it the job; the process loads them and runs, and from then on it
is that run's warm process (the run's owner, version and model are its key), or it is stopped when
warm runs are off. It never goes back to this pool, so no blank process ever sees two runs' data.

Isolation (why a blank process exposes nothing a later run's sandbox would not): it is started
exactly as a warm process is (same bubblewrap flags, seccomp filter, RLIMIT_AS, disk and process
caps, clean environment) with the binds every run on that runtime gets anyway (the runtime's Python,
the runner, the SDK overlay) plus two folders of its own, both created empty for it: `work`
(read-write: its /tmp, then the job folders of the run that takes it) and `inputs` (read-only to
it, written only by the worker: the copies of the control folder, model and input files of the run
that takes it). No pipeline folder, model or dataset is bound: what a run needs arrives in `inputs`
only once the run has taken the process. The key (`blank_key`) holds everything that shapes the
sandbox and the limits, so a run only takes a process started exactly as its own would be.

A blank process that dies or is killed is stopped and replaced in the background; the run that
wanted it gets a fresh process, as if there were no pool. So does a run that finds its blank
process still importing (it stays for the next run). A runtime whose
blank processes keep dying before they are ready is left alone for a while (FAILURE_PAUSE_S).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mlopen_runner.job import Job

log = logging.getLogger(__name__)

# numpy, pandas, scikit-learn, plotly and matplotlib, with the submodules pipelines import from
# (`from sklearn.linear_model import ...`, `import matplotlib.pyplot`): `import sklearn` alone
# leaves 100+ ms of estimator imports to the run. Names the runtime lacks are skipped.
DEFAULT_MODULES = (
    "numpy",
    "pandas",
    "sklearn",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.tree",
    "sklearn.neighbors",
    "sklearn.preprocessing",
    "sklearn.pipeline",
    "sklearn.model_selection",
    "sklearn.metrics",
    "plotly",
    "plotly.graph_objects",
    "matplotlib",
    "matplotlib.pyplot",
)
# Runtimes (blank keys) a worker keeps blank processes for, least recently wanted dropped first.
MAX_RUNTIMES = 2
# A run takes only a blank process that has finished its imports: one still importing (pandas,
# scikit-learn, matplotlib...) could keep a run of a light pipeline waiting longer than a fresh
# process would take, so the run starts a fresh one and the blank one stays for the next run.
# How often the background thread looks for dead blank processes.
CHECK_S = 1.0
# After this many blank processes of one runtime died in a row before being ready, its refills pause.
MAX_FAILURES = 3
FAILURE_PAUSE_S = 60.0


class Blank(Protocol):
    """What this pool needs of a process (mlopen_runner.warm_pool._WarmProcess)."""

    pid: int

    def alive(self) -> bool: ...

    def wait_ready(self, timeout: float) -> bool: ...

    @property
    def ready(self) -> bool: ...

    def stop(self) -> None: ...


def blank_key(job: Job) -> Hashable:
    """What a blank process shares with every run that may take it: the runtime (interpreter and
    PYTHONPATH overlay), the network and every limit the sandbox or the process was started with."""
    return (
        job.python,
        tuple(job.extra_pythonpath),
        job.allow_network,
        job.memory_mb,
        job.disk_mb,
        job.max_processes,
    )


@dataclass
class _Runtime:
    template: Job  # a run job of this runtime: its interpreter, overlay and limits
    processes: list[Blank] = field(default_factory=list)
    failures: int = 0
    paused_until: float = 0.0


class BlankPool:
    """Up to `size` blank processes for each of the last MAX_RUNTIMES runtimes this worker ran.

    `start(root, template)` starts one blank process for `template` in the empty folder `root`
    (its own, never reused). take() is called by the worker's run; a background thread starts the
    replacements and replaces dead processes.
    """

    def __init__(self, root: Path, size: int, start: Callable[[Path, Job], Blank]) -> None:
        self.root = root
        self.size = max(0, size)
        self.start = start
        self.runtimes: collections.OrderedDict[Hashable, _Runtime] = collections.OrderedDict()  # LRU first
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.closed = threading.Event()
        self.thread: threading.Thread | None = None
        self.started = 0  # blank processes started, ever
        self.taken = 0  # ... given to a run
        self.replaced = 0  # ... found dead (or not ready) and replaced

    def take(self, job: Job) -> Blank | None:
        """A ready blank process for `job`'s runtime, now the caller's; None when there is none (a
        fresh process then). Waits for one that is still importing."""
        if self.size == 0:
            return None
        key = blank_key(job)
        with self.lock:
            runtime = self.runtimes.get(key)
            if runtime is None:
                self._remember(key, job)
                return None
            self.runtimes.move_to_end(key)
            process = runtime.processes.pop(0) if runtime.processes else None
        if process is None:
            return None
        if process.wait_ready(0):
            self.taken += 1
            with self.lock:
                runtime.failures = 0
            return process
        if process.alive():  # still importing: it stays for the next run
            with self.lock:
                if not self.closed.is_set() and self.runtimes.get(key) is runtime:
                    runtime.processes.insert(0, process)
                    return None
            process.stop()
            return None
        log.warning("preimported process (pid %s) died: replaced; a fresh one runs", process.pid)
        process.stop()
        self._failed(key)
        return None

    def lost(self, job: Job) -> None:
        """A process take() gave out died before it took its job: counted, and replaced."""
        self.taken -= 1
        self._failed(blank_key(job))

    def want(self, job: Job) -> None:
        """Keep blank processes for `job`'s runtime (a worker's default runtime at start)."""
        if self.size:
            with self.lock:
                self._remember(key := blank_key(job), job)
                self.runtimes.move_to_end(key)
            self.refill()

    def refill(self) -> None:
        """Top the pool up in the background (after a run: its replacement does not compete with it)."""
        if self.size == 0 or self.closed.is_set():
            return
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._loop, name="mlopen-preimport", daemon=True)
            self.thread.start()
        self.wake.set()

    def pids(self) -> list[int]:
        with self.lock:
            return [p.pid for runtime in self.runtimes.values() for p in runtime.processes]

    def shutdown(self) -> None:
        self.closed.set()
        self.wake.set()
        with self.lock:
            processes = [p for runtime in self.runtimes.values() for p in runtime.processes]
            self.runtimes.clear()
        for process in processes:
            process.stop()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _remember(self, key: Hashable, job: Job) -> None:
        if key not in self.runtimes:
            self.runtimes[key] = _Runtime(job)
        while len(self.runtimes) > MAX_RUNTIMES:
            _old, dropped = self.runtimes.popitem(last=False)
            for process in dropped.processes:
                process.stop()

    def _failed(self, key: Hashable) -> None:
        with self.lock:
            runtime = self.runtimes.get(key)
            if runtime is None:
                return
            self.replaced += 1
            runtime.failures += 1
            if runtime.failures >= MAX_FAILURES:
                runtime.paused_until = time.monotonic() + FAILURE_PAUSE_S
                log.warning("preimported processes keep dying; none started for %.0f s", FAILURE_PAUSE_S)
        self.refill()

    def _loop(self) -> None:
        while not self.closed.is_set():
            self.wake.wait(CHECK_S)
            self.wake.clear()
            if self.closed.is_set():
                return
            try:
                self._drop_dead()
                self._top_up()
            except Exception:  # noqa: BLE001 - the thread must outlive one failed start
                log.exception("starting preimported processes failed")

    def _drop_dead(self) -> None:
        with self.lock:
            for runtime in self.runtimes.values():
                for process in runtime.processes:
                    if not process.ready and process.wait_ready(0):  # a look, no wait
                        log.info("preimported process ready (pid %s)", process.pid)
            dead = [
                (key, process)
                for key, runtime in self.runtimes.items()
                for process in runtime.processes
                if not process.alive()
            ]
            for key, process in dead:
                self.runtimes[key].processes.remove(process)
        for key, process in dead:
            log.warning("preimported process (pid %s) died while waiting: replaced", process.pid)
            process.stop()
            self._failed(key)

    def _top_up(self) -> None:
        while not self.closed.is_set():
            with self.lock:
                now = time.monotonic()
                short = next(
                    (
                        (key, runtime)
                        for key, runtime in reversed(self.runtimes.items())  # most recently wanted first
                        if len(runtime.processes) < self.size and runtime.paused_until <= now
                    ),
                    None,
                )
                if short is None:
                    return
                self.started += 1
                root = self.root / f"b{self.started}"
            key, runtime = short
            try:
                process = self.start(root, runtime.template)
            except OSError as exc:
                log.warning("could not start a preimported process: %s", exc)
                with self.lock:
                    runtime.paused_until = time.monotonic() + FAILURE_PAUSE_S
                continue
            log.info("preimported process started (pid %s)", process.pid)
            with self.lock:
                if self.closed.is_set() or self.runtimes.get(key) is not runtime:
                    stale = True
                else:
                    runtime.processes.append(process)
                    stale = False
            if stale:
                process.stop()
