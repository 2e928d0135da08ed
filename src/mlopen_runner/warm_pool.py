"""Parent side of warm runs: keep a child per pipeline version and model, and give it run jobs.

A cold run starts Python, imports the control file (and with it pandas, scikit-learn...) and
unpickles the model, every time. A warm process (mlopen_runner.warm) does that once and then
serves run jobs one at a time. It is started like the cold child (sandbox, clean environment,
RLIMIT_AS) and watched like it: a job's timeout, the RSS of the process tree and cancelling are
enforced by the same loop, with the same error texts, and any of them kills the warm process.
A warm process that dies fails its run as a cold child would, and the next run starts a new one.
So does one a job left unlike a fresh process (a thread still running, its standard streams
replaced, too much memory kept; see _WarmProcess.memory_problem and warm._ProcessState), or one
found using CPU or memory while idle: the job keeps its outcome and the process is retired.

Each process has a root folder of the worker's with two folders in it: `work`, bound read-write
in its sandbox, where each job gets its own folder (and the process its /tmp), and `inputs`, bound
read-only, where the worker puts the process's job description and copies of each job's input
files (the last job's kept for the next: _InputCopies).
The worker never writes in `work` (a thread the last job left running could have planted a link
there) and reads the job's outputs from it only through mlopen_runner.untrusted.

A warm process serves the runs of one user only (the caller puts the run's owner in the key), so
module-level state a pipeline keeps between runs never carries one user's data into another's run.

A run with no warm process takes a blank one when there is one (mlopen_runner.preimport: started
ahead of need, the runtime's heavy packages already imported): the worker copies the control folder
and the model into that process's `inputs` folder and the process loads them there, so the run
skips starting Python and those imports. Without one (or with one too big to copy to) it starts a
fresh process as before.

Module-level state of a pipeline lives as long as its warm process: a run_pipeline that mutates
globals behaves as it would in a long-lived server. A pure run_pipeline gives the same result
cold and warm.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from mlopen_runner import preimport, sandbox, supervisor
from mlopen_runner.job import MB, Job, Outcome, disk_full_message, is_disk_full
from mlopen_runner.warm import COMMANDS_FD_VARIABLE, OWN_PIDS_VARIABLE, PREIMPORT_VARIABLE, REPLIES_FD_VARIABLE
from mlopen_runner.watching import READ_SIZE, Callbacks, JobWatch, NoCallbacks, ProcessTree, Stop

log = logging.getLogger(__name__)

WARM_FILE = "warm.json"
# Inputs are copied into the job's folder; past this size the copy would cost more than a cold
# start saves, so such runs go cold.
MAX_COPIED_INPUT_MB = 512
# A blank process gets a copy of the run's control folder (the control file and its support files);
# a folder bigger than this makes the run start a fresh process instead.
MAX_COPIED_CODE_MB = 64
# What a blank process's sandbox knows as its control file until a run gives it one: a name in its
# own read-only inputs folder, so the folder bound for "the control file's folder" is that one.
BLANK_CONTROL = "blank.py"
# How long a warm process whose replies pipe closed gets to finish exiting before it is killed.
EXIT_GRACE_S = 1.0
# A reply line from the warm child ({"done": n, ...}) is far shorter than this.
MAX_REPLY_BYTES = 64 * 1024
# After "done", how long at most to read what the job left in the pipes.
FINAL_READ_S = 0.05
# How often the pool's background thread looks at idle processes (at most; never more often than
# a quarter of idle_seconds): one RSS and CPU reading of each idle process's tree per pass.
IDLE_CHECK_S = 1.0
# An idle process that used more CPU than this share of one core since the previous pass is doing
# something nobody asked for (a waiting warm process uses none).
IDLE_CPU_SHARE = 0.5


class WarmPool:
    """Warm processes of one worker, at most `max_processes`, each stopped after `idle_seconds` unused.

    Not for concurrent execute() calls: a worker runs one run at a time. A background thread only
    stops idle processes.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_processes: int = 2,
        idle_seconds: float = 300.0,
        blank_pool_size: int = 0,
        preimport_modules: tuple[str, ...] | list[str] = preimport.DEFAULT_MODULES,
    ) -> None:
        self.root = Path(root)
        self.preimport_modules = list(preimport_modules)
        self.blanks = preimport.BlankPool(self.root / "blank", blank_pool_size, self._start_blank)
        self.max_processes = max(1, max_processes)
        self.idle_seconds = idle_seconds
        self.idle: collections.OrderedDict[Hashable, _WarmProcess] = collections.OrderedDict()  # LRU first
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.reaper: threading.Thread | None = None
        self.started_count = 0
        self.trash = _Trash(self.root / "trash")

    def execute(
        self,
        job: Job,
        callbacks: Callbacks | None = None,
        *,
        key: Hashable,
        family: Hashable | None = None,
        label: str = "",
        keep: bool = True,
    ) -> Outcome:
        """Run `job` in the warm process for `key`, else a blank one, else a new one; cold if it cannot go warm.

        `key` names what the process holds (pipeline version, trained model, interpreter, network,
        memory limit, owner); `family` (the pipeline) groups keys: a run of a family stops the
        family's processes held under another key (an older version or model). `label` names the
        job in the log lines. `keep=False` (warm runs off): the process is stopped after the job,
        and without a blank process the job runs in a fresh cold child.
        """
        label = label or f"job for {key}"
        callbacks = callbacks or NoCallbacks()
        if not accepts(job):
            return supervisor.execute(job, callbacks)
        try:
            return self._execute(job, callbacks, key, family, label, keep)
        finally:
            self.blanks.refill()  # after the run: a replacement's imports do not compete with it

    def prepare(self, job: Job) -> None:
        """Keep blank processes for the runtime (and limits) of run job `job` from now on."""
        self.blanks.want(job)

    def _execute(
        self, job: Job, callbacks: Callbacks, key: Hashable, family: Hashable | None, label: str, keep: bool
    ) -> Outcome:
        process = self._take(key, family, job) if keep else None
        if process is not None:
            log.info("%s: warm process reused (pid %s, %d earlier runs)", label, process.pid, process.jobs)
            return self._run(process, job, callbacks, keep, label)
        process = self._take_blank(job, key, family, label)
        if process is not None:
            outcome = self._run(process, job, callbacks, keep, label)
            if process.began_job:
                return outcome
            # Killed or dead between its last look and the job: nothing of the job ran, so a fresh
            # process runs it (never twice: the child says "taken" before it loads anything).
            log.warning("%s: preimported process (pid %s) died before the job: a fresh one runs", label, process.pid)
            self.blanks.lost(job)
        if not keep:
            return supervisor.execute(job, callbacks)
        process = _WarmProcess(self._new_root(), _template(job), key, family)
        try:
            process.start()
        except OSError as exc:
            process.stop()
            why = disk_full_message(str(process.root)) if is_disk_full(exc) else str(exc)
            return Outcome(status="failed", error=f"Could not start the pipeline process: {why}")
        log.info("%s: warm process started (pid %s)", label, process.pid)
        return self._run(process, job, callbacks, keep, label)

    def _run(self, process: _WarmProcess, job: Job, callbacks: Callbacks, keep: bool, label: str) -> Outcome:
        try:
            outcome = process.run(job, callbacks, self.trash)
        except OSError as exc:
            process.stop()
            if not is_disk_full(exc):
                raise
            # Making the job's folder or copying its inputs in: the worker's disk, not the pipeline.
            return Outcome(status="failed", error=disk_full_message(str(process.root)))
        except BaseException:
            process.stop()
            raise
        if process.retire_reason:
            log.info("%s: warm process retired (pid %s): %s", label, process.pid, process.retire_reason)
        if keep:
            self._give_back(process)
        else:
            process.stop()
        return outcome

    def _take_blank(self, job: Job, key: Hashable, family: Hashable | None, label: str) -> _WarmProcess | None:
        """A blank process given this job's control folder and model, or None (a fresh process then)."""
        if not _copyable(job):
            return None
        blank = self.blanks.take(job)
        if blank is None:
            return None
        assert isinstance(blank, _WarmProcess)  # what _start_blank makes
        try:
            blank.adopt(job, key, family)
        except OSError as exc:
            log.warning("%s: could not give the preimported process (pid %s) its code: %s", label, blank.pid, exc)
            blank.stop()
            return None
        log.info("%s: preimported process taken (pid %s)", label, blank.pid)
        return blank

    def _start_blank(self, root: Path, template: Job) -> _WarmProcess:
        blank = replace(_template(template), control_path=str(root / "inputs" / BLANK_CONTROL), model_path=None)
        process = _WarmProcess(root, blank, None, None)
        try:
            process.start(preimport=self.preimport_modules)
        except BaseException:
            process.stop()
            raise
        return process

    def forget(self, matches: Callable[[Hashable], bool]) -> None:
        """Stop the idle processes whose family `matches` (their model or version changed)."""
        with self.lock:
            stale = [k for k, p in self.idle.items() if matches(p.family)]
            processes = [self.idle.pop(k) for k in stale]
        for process in processes:
            log.info("warm process stopped (pid %s): a new model or version of %s", process.pid, process.family)
            process.stop()

    def reap_idle(self, now: float | None = None) -> None:
        """Stop idle processes unused for idle_seconds, dead, or found working while idle; drop their
        copies of stored files that are gone or changed since (a dataset deleted meanwhile)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            stale = [k for k, p in self.idle.items() if now - p.last_used >= self.idle_seconds or not p.alive()]
            processes = [self.idle.pop(k) for k in stale]
            waiting = list(self.idle.items())
            # Under the lock, so no run takes the process meanwhile: a stat of each kept copy's
            # stored file (one job's inputs, usually one file), a rename for each that is gone.
            for _key, process in waiting:
                process.input_copies.drop_outdated(self.trash)
        for process in processes:
            log.info("warm process stopped (pid %s): idle for %.0f s", process.pid, now - process.last_used)
            process.stop()
        # Measured outside the lock (a run may take the process meanwhile: it is then left alone).
        busy = [(key, process, why) for key, process in waiting if (why := process.idle_problem())]
        for key, process, why in busy:
            with self.lock:
                if self.idle.get(key) is not process:
                    continue
                del self.idle[key]
            log.info("warm process stopped (pid %s): %s while idle", process.pid, why)
            process.stop()

    def shutdown(self) -> None:
        self.closed.set()
        self.blanks.shutdown()
        with self.lock:
            processes = list(self.idle.values())
            self.idle.clear()
        for process in processes:
            process.stop()
        self.trash.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def pids(self) -> list[int]:
        with self.lock:
            return [p.pid for p in self.idle.values()]

    def _take(self, key: Hashable, family: Hashable | None, job: Job) -> _WarmProcess | None:
        """The idle process for `key`, if it can serve `job`; stops what this run makes stale."""
        with self.lock:
            stopping = [
                self.idle.pop(k)
                for k, p in list(self.idle.items())
                if k != key and family is not None and p.family == family
            ]
            process = self.idle.pop(key, None)
            if process is not None and (not process.alive() or process.template != _template(job)):
                stopping.append(process)
                process = None
            if process is None:  # room for the one about to start: least recently used go first
                while len(self.idle) >= self.max_processes:
                    stopping.append(self.idle.popitem(last=False)[1])
        for old in stopping:
            log.info("warm process stopped (pid %s): making way for %s", old.pid, key)
            old.stop()
        return process

    def _give_back(self, process: _WarmProcess) -> None:
        if not process.reusable():
            process.stop()
            return
        process.last_used = time.monotonic()
        with self.lock:
            if self.closed.is_set():
                evicted = [process]
            else:
                self.idle[process.key] = process
                self.idle.move_to_end(process.key)
                evicted = []
                while len(self.idle) > self.max_processes:
                    evicted.append(self.idle.popitem(last=False)[1])
        for old in evicted:
            old.stop()
        # Whichever way the process came (started here, or a blank one taken), an idle one is reaped.
        self._start_reaper()

    def _new_root(self) -> Path:
        self.started_count += 1
        return self.root / f"p{self.started_count}"

    def _start_reaper(self) -> None:
        if self.reaper is not None and self.reaper.is_alive():
            return
        self.reaper = threading.Thread(target=self._reap_loop, name="mlopen-warm-reaper", daemon=True)
        self.reaper.start()

    def _reap_loop(self) -> None:
        interval = max(0.2, min(self.idle_seconds / 4, IDLE_CHECK_S))
        while not self.closed.wait(interval):
            try:
                self.reap_idle()
            except Exception:  # noqa: BLE001 - the reaper must outlive one failed stop
                log.exception("stopping idle warm processes failed")


class _Trash:
    """Removes finished job folders off the run's path.

    A folder is first renamed out of its warm process's root (one cheap call, after which no later
    job in that sandbox can see it), then deleted by a background thread.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self.pending: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    def put(self, path: Path) -> None:
        self.count += 1
        target = self.folder / f"{self.count}-{path.parent.name}-{path.name}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            os.rename(path, target)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
            return
        if self.thread is None:
            self.thread = threading.Thread(target=self._empty, name="mlopen-warm-trash", daemon=True)
            self.thread.start()
        self.pending.put(target)

    def close(self) -> None:
        if self.thread is not None:
            self.pending.put(None)
            self.thread.join(timeout=10)
            self.thread = None

    def _empty(self) -> None:
        while (path := self.pending.get()) is not None:
            shutil.rmtree(path, ignore_errors=True)


def accepts(job: Job) -> bool:
    """Only run jobs go warm, and only when every file they read can be copied into their folder."""
    if job.kind != "run":
        return False
    data_files = job.data_files()
    if not set(job.readonly_paths) <= set(data_files):
        return False
    try:
        total = sum(os.path.getsize(path) for path in data_files)
    except OSError:
        return False  # let the cold path report the missing file as it always has
    return total <= MAX_COPIED_INPUT_MB * MB


def _copyable(job: Job) -> bool:
    """Whether the job's control folder and model are small enough to copy into a blank process."""
    try:
        code = sum(
            os.path.getsize(os.path.join(folder, name))
            for folder, _dirs, names in os.walk(os.path.dirname(job.control_path))
            for name in names
        )
        model = os.path.getsize(job.model_path) if job.model_path else 0
    except OSError:
        return False  # a fresh process reports what is missing, as it always has
    return code <= MAX_COPIED_CODE_MB * MB and model <= MAX_COPIED_INPUT_MB * MB


def _template(job: Job) -> Job:
    """What a warm process holds and how it is sandboxed; jobs that differ in any of it cannot share one."""
    return Job(
        kind="run",
        control_path=job.control_path,
        work_dir="",
        model_path=job.model_path,
        memory_mb=job.memory_mb,
        python=job.python,
        allow_network=job.allow_network,
        extra_pythonpath=list(job.extra_pythonpath),
        disk_mb=job.disk_mb,
        max_processes=job.max_processes,
    )


class _WarmProcess:
    def __init__(self, root: Path, template: Job, key: Hashable, family: Hashable | None) -> None:
        self.root = root  # the worker's alone; the sandbox sees only its two folders
        self.work = root / "work"  # read-write in the sandbox
        self.inputs = root / "inputs"  # read-only in the sandbox
        self.template = template
        self.key = key
        self.family = family
        self.tree: ProcessTree | None = None
        self.pid = 0
        self.jobs = 0
        self.retire_reason = ""  # set after a job: why this process must not take another
        # RSS of the process right after loading the pipeline (its first reply says): what a fresh
        # process would start a run with.
        self.loaded_mb: float | None = None
        self.idle_cpu: tuple[float, float, float] | None = None  # (last_used, CPU seconds, when) last look
        self.last_used = time.monotonic()
        self.fds: dict[str, int] = {}
        self.own_pids = False
        self.launch: sandbox.Launch | None = None
        self.ready = True  # a blank process is ready once its imports are done (wait_ready)
        self.ready_pending = b""
        # False while the first job of a taken blank process has not been acknowledged ("taken"):
        # a process that dies before that ran nothing of the job.
        self.began_job = True
        # A blank process given a run: where its copies of the control file and model are; every job
        # it gets names them instead of the stored ones (which its sandbox does not bind).
        self.loaded_paths: tuple[str, str | None] | None = None  # (control file, model)
        self.input_copies = _InputCopies(self.inputs)

    def start(self, preimport: list[str] | None = None) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.work.mkdir()
        self.inputs.mkdir()
        # The process writes only in `work`; what the worker gives it (its job description, each
        # job's input files) is in `inputs`, bound read-only, where nothing of the process's can
        # lie in wait for the worker's writes.
        sandboxed = replace(
            self.template, work_dir=str(self.work), readonly_paths=[*self.template.readonly_paths, str(self.inputs)]
        )
        if not sandbox.active():
            sandboxed = replace(sandboxed, max_processes=None)  # as supervisor._prepare_work_dir
        Path(self.inputs, WARM_FILE).write_text(sandboxed.to_json())
        python = self.template.python or sys.executable
        command = [python, "-m", "mlopen_runner.warm", os.path.join(self.inputs, WARM_FILE)]
        launch = sandbox.wrap_command(command, sandboxed, python, supervisor.runner_paths(sandboxed))
        self.own_pids = launch.sandboxed  # bwrap --unshare-all: a PID namespace of its own
        output_read, output_write = os.pipe()
        events_read, events_write = os.pipe()
        commands_read, commands_write = os.pipe()
        replies_read, replies_write = os.pipe()
        theirs = (output_write, events_write, commands_read, replies_write)
        ours = {"output": output_read, "events": events_read, "commands": commands_write, "replies": replies_read}
        env = supervisor.child_environment(sandboxed, events_write)
        env.update({COMMANDS_FD_VARIABLE: str(commands_read), REPLIES_FD_VARIABLE: str(replies_write)})
        if self.own_pids:
            env[OWN_PIDS_VARIABLE] = "1"
        if preimport is not None:
            env[PREIMPORT_VARIABLE] = ",".join(preimport)
            self.ready = False
        self.launch = launch
        try:
            process = launch.popen(
                cwd=self.work,
                env=env,
                stdout=output_write,
                stderr=output_write,
                pass_fds=(events_write, commands_read, replies_write),
                start_new_session=True,
            )
        except OSError:
            for fd in ours.values():
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        self.fds = ours
        self.pid = process.pid
        # Non-blocking: a job's first read empties what the previous job's leftovers wrote.
        for name in ("output", "events", "replies"):
            os.set_blocking(self.fds[name], False)
        self.tree = ProcessTree(process)

    def wait_ready(self, timeout: float) -> bool:
        """A blank process: whether it has said its imports are done, waiting up to `timeout` seconds
        for it (0: just look); False if not yet, or if it died (alive() tells which)."""
        deadline = time.monotonic() + timeout
        while not self.ready:
            if not self.alive() or "replies" not in self.fds:
                return False
            wait = max(0.0, min(deadline - time.monotonic(), 0.5))
            readable, _, _ = select.select([self.fds["replies"]], [], [], wait)
            if readable:
                try:
                    chunk = os.read(self.fds["replies"], READ_SIZE)
                except BlockingIOError:
                    continue
                if not chunk:  # the replies pipe closed: the process is gone
                    self.retire_reason = "its replies pipe closed before it was ready"
                    return False
                *lines, self.ready_pending = (self.ready_pending + chunk).split(b"\n")
                if len(self.ready_pending) > MAX_REPLY_BYTES:
                    self.ready_pending = b""
                self.ready = any(_is_ready(line) for line in lines)
            elif time.monotonic() >= deadline:
                return False
        return self.alive()

    def adopt(self, job: Job, key: Hashable, family: Hashable | None) -> None:
        """Make this blank process `job`'s: copies of its control folder and model in the read-only
        inputs folder (the worker's copies: nothing of the stored pipeline is bound or reachable),
        then the key and template of a warm process for `job`."""
        code = self.inputs / "code"
        shutil.copytree(os.path.dirname(job.control_path), code, symlinks=True)  # a link is copied, never followed
        model = None
        if job.model_path:
            (self.inputs / "model").mkdir()
            model = str(self.inputs / "model" / os.path.basename(job.model_path))
            shutil.copyfile(job.model_path, model)
        self.loaded_paths = (str(code / os.path.basename(job.control_path)), model)
        self.template = _template(job)
        self.key = key
        self.family = family

    def alive(self) -> bool:
        return self.tree is not None and self.tree.process.poll() is None and not self.retire_reason

    def reusable(self) -> bool:
        return self.alive() and "replies" in self.fds

    def memory_problem(self, rss_mb: float, memory_mb: int | None) -> str | None:
        """Why a process whose tree has `rss_mb` must not take another run, if it must not.

        A fresh process starts a run at `loaded_mb`; one kept after a job starts it at `rss_mb`. It
        is kept only while it leaves the next run at least half the room under the limit a fresh
        process would: RSS at most halfway from loaded_mb to the limit (and never at the limit).
        A run that left memory behind is not blamed: the next run gets a fresh process instead.
        """
        if memory_mb is None:
            return None
        loaded = min(self.loaded_mb or 0.0, float(memory_mb))
        allowed = (loaded + memory_mb) / 2
        if rss_mb > allowed or rss_mb >= memory_mb:
            return (
                f"{rss_mb:.0f} MB in use, over the {allowed:.0f} MB kept processes may hold "
                f"(halfway from {loaded:.0f} MB loaded to the {memory_mb} MB limit)"
            )
        return None

    def idle_problem(self) -> str | None:
        """Why this idle process must stop: its memory grew past memory_problem()'s line, or it
        used CPU since the last look. A few psutil readings of the processes the tree knows."""
        if self.tree is None or self.tree.killed:
            return None
        why = self.memory_problem(self.tree.rss_mb(rescan=False), self.template.memory_mb)
        if why:
            return why
        # Keyed by last_used, which changes when a run gives the process back: a look taken during
        # a run (it may take the process while this runs) is never compared with one taken after it.
        since, now, cpu = self.last_used, time.monotonic(), self.tree.cpu_seconds()
        previous, self.idle_cpu = self.idle_cpu, (since, cpu, now)
        if previous is None or previous[0] != since or now <= previous[2]:
            return None  # first look since its last job
        share = (cpu - previous[1]) / (now - previous[2])
        if share > IDLE_CPU_SHARE:
            return f"{share:.0%} of a CPU in use"
        return None

    def run(self, job: Job, callbacks: Callbacks, trash: _Trash) -> Outcome:
        self.jobs += 1
        self.began_job = self.loaded_paths is None or self.jobs > 1
        # A name the process cannot guess, made with mkdir (which never follows a link): whatever
        # its leftover threads plant in `work` cannot become this job's folder.
        job_dir = Path(tempfile.mkdtemp(prefix=f"job{self.jobs}-", dir=self.work))
        copies = self.input_copies.for_job(trash)
        try:
            localized = _localized(job, job_dir, copies.copy_of)
            if self.loaded_paths is not None:
                control_path, model_path = self.loaded_paths
                localized = replace(localized, control_path=control_path, model_path=model_path)
            watch = _WarmRun(self, localized, callbacks)
            watch.keep_beside = job.work_dir  # the caller's folder, which this process cannot write in
            return watch.execute()
        finally:
            trash.put(job_dir)
            copies.done()

    def stop(self) -> None:
        """Kill the process tree and remove its folder. Nothing in a warm process needs a clean exit."""
        if self.tree is not None:
            self.tree.kill()
        if self.launch is not None:
            self.launch.release()
        self.close_pipes()
        shutil.rmtree(self.root, ignore_errors=True)

    def close_pipes(self) -> None:
        for name in list(self.fds):
            os.close(self.fds.pop(name))


class _WarmRun(JobWatch):
    """One job in a warm process: it ends on the process's "done" reply, and the process lives on.

    The pipes belong to the process and outlive the job. A limit or a cancel kills the process tree
    as it would a cold child's; a process that dies during the job fails the run as a cold child's
    exit would.
    """

    def __init__(self, warm: _WarmProcess, job: Job, callbacks: Callbacks) -> None:
        super().__init__(job, callbacks)
        self.warm = warm
        assert warm.tree is not None  # a job is given to a started process
        self.tree = warm.tree
        self.replies_fd = warm.fds["replies"]
        self.replies = b""
        self.done: dict[str, Any] | None = None
        self.exited = False

    def execute(self) -> Outcome:
        self._discard_stale_output()
        self.listen(self.warm.fds["output"], self.on_output)
        self.listen(self.warm.fds["events"], self.on_events)
        self.listen(self.replies_fd, self._on_replies)
        self.started = time.monotonic()
        try:
            request = json.dumps({"id": self.warm.jobs, "job": asdict(self.job)}) + "\n"
            os.write(self.warm.fds["commands"], request.encode())
        except OSError:
            self.exited = True  # died between jobs; the loop below reads why
        try:
            self.watch()
            self._settle()
        finally:
            self.selector.close()
        return self.outcome()

    def over(self) -> bool:
        return self.done is not None or self.exited

    def writable_root(self) -> str:
        return str(self.warm.work)  # every job's folder and the process's /tmp share one budget

    def judge(self, outcome: Outcome) -> None:
        if self.done is None:  # the process died during the job
            super().judge(outcome)
            outcome.error = outcome.error or "Pipeline process exited without finishing the run"
            return
        # What a cold child would have exited with after the same job.
        outcome.error = self.reported_error()
        outcome.exit_code = 0 if outcome.error is None else 1

    def pipe_closed(self, fd: int) -> None:
        # Only the warm process itself holds the replies pipe (its programs do not inherit it).
        self.exited = self.exited or fd == self.replies_fd

    def check_limits(self, now: float) -> Stop | None:
        # The replies pipe's end is the usual news of a death; this catches one the pipe missed.
        # A dead process is not measured: its exit, not a limit, is the run's outcome.
        self.exited = self.tree.process.poll() is not None
        return None if self.exited else super().check_limits(now)

    def collect_outputs(self, outcome: Outcome, result_text: str | None = None) -> None:
        inline = self.done.get("result") if self.done is not None else None
        # Anything but a text is no result: the run is read as if none came (its file, if any).
        super().collect_outputs(outcome, inline if isinstance(inline, str) else None)

    def _settle(self) -> None:
        """Keep the process for the next job if the job finished, else kill it; then hand over the log."""
        if self.done is not None:
            # Everything the job printed or reported was written before "done": it is in the pipes.
            # (Bounded: a thread the pipeline left running may be printing still.)
            deadline = time.monotonic() + FINAL_READ_S
            while self.read_ready(0) and time.monotonic() < deadline:
                pass
            # One tree scan per process (its first job); later jobs read the processes it found.
            rss_mb = self.tree.rss_mb(rescan=len(self.tree.known) == 1)
            self.peak_rss_mb = max(self.peak_rss_mb, rss_mb)
            if isinstance(self.done.get("loaded_mb"), (int, float)):
                self.warm.loaded_mb = float(self.done["loaded_mb"])
            # Anything that would make the next run differ from a cold one retires the process
            # (the child says what it found; the memory is checked here); this run keeps its outcome.
            if self.done.get("retire"):
                self.warm.retire_reason = str(self.done.get("why") or "the process asked to retire")[:300]
            else:
                self.warm.retire_reason = self.warm.memory_problem(rss_mb, self.job.memory_mb) or ""
            if not self.warm.own_pids:  # under bwrap the child kills what the job left running
                self.tree.kill_descendants()
        else:
            if self.exited:  # the replies pipe closed: give the process a moment to finish dying
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.tree.process.wait(EXIT_GRACE_S)
            self.tree.kill()
            self.drain()
        self.finish_output()

    def _discard_stale_output(self) -> None:
        # Output a previous job's leftover threads wrote after its "done" is nobody's.
        for name in ("output", "events"):
            with contextlib.suppress(BlockingIOError, OSError):
                while os.read(self.warm.fds[name], READ_SIZE):
                    pass

    def _on_replies(self, chunk: bytes) -> None:
        *lines, self.replies = (self.replies + chunk).split(b"\n")
        # Pipeline code can find and write to this descriptor too: a reply is a short line, and an
        # unterminated longer one is not ours (as on the events pipe), so it cannot grow the worker.
        if len(self.replies) > MAX_REPLY_BYTES:
            self.replies = b""
        for line in lines:
            with contextlib.suppress(ValueError):
                reply = json.loads(line)
                if isinstance(reply, dict) and self.warm.jobs in (reply.get("done"), reply.get("taken")):
                    self.warm.began_job = True
                if isinstance(reply, dict) and reply.get("done") == self.warm.jobs:
                    self.done = reply


def _is_ready(line: bytes) -> bool:
    try:
        reply = json.loads(line)
    except ValueError:
        return False
    return isinstance(reply, dict) and reply.get("ready") is True


def _localized(job: Job, job_dir: Path, copy_of: Callable[[str], str]) -> Job:
    """`job` with its own folder in the process's work folder, and the files it reads as copies in
    the read-only inputs folder (`copy_of`: a copy, not a hard link: nothing may reach the stored dataset)."""
    job_input = dict(job.input, path=copy_of(job.input["path"])) if job.input else None
    files = {name: dict(ref, path=copy_of(ref["path"])) for name, ref in job.files.items()}
    return replace(job, work_dir=str(job_dir), input=job_input, files=files, readonly_paths=[])


_Identity = tuple[str, int, int, int, int]


def _identity(path: str, status: os.stat_result) -> _Identity:
    """A stored file as it was when copied: the same path, device, inode, size and modification time."""
    return (path, status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _unchanged(identity: _Identity) -> bool:
    try:
        return _identity(identity[0], os.stat(identity[0])) == identity
    except OSError:
        return False


class _InputCopies:
    """A warm process's copies of the stored files its jobs read, in its read-only inputs folder.

    The last job's copies are kept for the next job, which reuses those of the same stored file
    while the file is unchanged (same device, inode, size and modification time): a user who runs
    a pipeline again on the same dataset costs no copy, and no folder or file made, which cost
    0.2-0.8 ms of CPU each on some hosts' file systems. What the next job does not read goes to the
    trash when it ends, so a process keeps at most one job's inputs (MAX_COPIED_INPUT_MB), and only
    of its own user's (a warm process serves one). A copy is the worker's file in a folder the
    process cannot write, so a job cannot change what the next one reads.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.made = 0
        self.kept: dict[_Identity, str] = {}

    def for_job(self, trash: _Trash) -> _JobInputs:
        return _JobInputs(self, trash)

    def drop_outdated(self, trash: _Trash) -> None:
        """Put in the trash the copies of stored files that are gone or changed since they were copied.

        A user who deletes a dataset expects it gone from the workers too, not only when this idle
        process stops (MLOPEN_WARM_IDLE_SECONDS) or runs again; the reaper calls this every second.
        """
        for identity in [identity for identity in self.kept if not _unchanged(identity)]:
            trash.put(Path(self.kept.pop(identity)).parent)


class _JobInputs:
    """One job's use of _InputCopies: copy_of() each file it reads, then done()."""

    def __init__(self, copies: _InputCopies, trash: _Trash) -> None:
        self.copies = copies
        self.trash = trash
        self.used: dict[_Identity, str] = {}
        self.by_path: dict[str, str] = {}
        self.unkept: list[Path] = []

    def copy_of(self, path: str) -> str:
        if path in self.by_path:
            return self.by_path[path]
        try:
            status = os.stat(path)
        except OSError:
            status = None
        if status is None:  # a missing file stays missing: the pipeline reports it as a cold run would
            target = self._new_folder(keep=False) / os.path.basename(path)
        else:
            identity = _identity(path, status)
            kept = self.copies.kept.pop(identity, None)
            if kept is None:
                folder = self._new_folder(keep=True)
                target = folder / os.path.basename(path)  # the stored file's own name
                try:
                    shutil.copyfile(path, target)
                    os.chmod(target, 0o444)  # our own new file, in a folder only the worker writes
                except OSError:
                    self.trash.put(folder)
                    raise
                kept = str(target)
            self.used[identity] = kept
            target = Path(kept)
        self.by_path[path] = str(target)
        return str(target)

    def _new_folder(self, keep: bool) -> Path:
        self.copies.made += 1
        folder = self.copies.folder / f"input{self.copies.made}"
        folder.mkdir()
        if not keep:
            self.unkept.append(folder)
        return folder

    def done(self) -> None:
        """Keep this job's copies for the next job; the last job's it did not read go."""
        for stale in self.copies.kept.values():
            self.trash.put(Path(stale).parent)
        for folder in self.unkept:
            self.trash.put(folder)
        self.copies.kept = self.used
