"""Warm processes: reused for run jobs of one pipeline version and model, same outcomes as cold.

Real child processes, no Django. Each control file prints a token made when it is imported, so a
run's log says which process served it.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
from types import SimpleNamespace

import psutil
import pytest

from mlopen_runner import Job
from mlopen_runner.warm_pool import MAX_REPLY_BYTES, WarmPool, _WarmProcess, _WarmRun, accepts

CONTROL = """
    import os, sys, time, uuid
    from mlopenapp.utils import io_handler as io

    TOKEN = uuid.uuid4().hex
    print("imported", TOKEN)

    def train(inpt, params=None):
        pass

    def run_pipeline(input, model, args, params=None):
        mode = params.get("mode", "ok")
        print("serving", TOKEN, mode)
        io.progress(0.5, "halfway")
        io.log_metric("rows", 2, step=1)
        if mode == "fail":
            raise ValueError("asked to fail")
        if mode == "crash":
            os._exit(3)
        if mode == "kill":
            os.kill(os.getpid(), 9)
        if mode == "exit":
            sys.exit(4)
        if mode == "sleep":
            time.sleep(60)
        if mode == "hog":
            hoard = bytearray(400 * 1024 * 1024)
            for index in range(0, len(hoard), 4096):
                hoard[index] = 1
            time.sleep(60)
        if mode == "spawn":
            import subprocess
            subprocess.Popen(["sleep", params["marker"]])
        lines = input.read().decode().splitlines() if input else []
        return {"columns": ["line", "length"], "data": [[line, len(line)] for line in lines],
                "text": f"{len(lines)} lines"}
"""


class Recorder:
    """Callbacks that keep the log and events and can ask to cancel after a delay."""

    def __init__(self, cancel_after_s: float | None = None) -> None:
        self.cancel_after_s = cancel_after_s
        self.started = time.monotonic()
        self.cancel_requested_at: float | None = None
        self.texts: list[str] = []
        self.events: list[dict] = []

    def output(self, text: str) -> None:
        self.texts.append(text)

    def event(self, event: dict) -> None:
        self.events.append(event)

    def tick(self) -> bool:
        if self.cancel_after_s is None or time.monotonic() - self.started < self.cancel_after_s:
            return False
        self.cancel_requested_at = self.cancel_requested_at or time.monotonic()
        return True

    @property
    def log(self) -> str:
        return "".join(self.texts)


@pytest.fixture
def pool(tmp_path):
    warm = WarmPool(tmp_path / "warm", max_processes=2, idle_seconds=60)
    yield warm
    warm.shutdown()


@pytest.fixture
def run_warm(pool, tmp_path, data_file):
    """Execute a run job through the pool; returns (outcome, recorder)."""
    counter = iter(range(1000))

    def run(control: str, mode: str = "ok", key=("v1", None), family="p", cancel_after_s=None, **fields):
        fields.setdefault("timeout_s", 30)
        if "input" not in fields:
            fields["input"] = data_file("a,b\n1,2\n", name="default.csv")
        job = Job(
            kind="run",
            control_path=control,
            work_dir=str(tmp_path / f"work{next(counter)}"),
            params={"mode": mode, **fields.pop("params", {})},
            **fields,
        )
        recorder = Recorder(cancel_after_s)
        return pool.execute(job, recorder, key=key, family=family), recorder

    return run


def token(log: str) -> str:
    return next(line.split()[1] for line in log.splitlines() if line.startswith("serving "))


def test_the_second_run_is_served_by_the_same_process_without_importing_again(write_pipeline, run_warm, pool):
    control = write_pipeline(CONTROL)

    first, first_log = run_warm(control)
    second, second_log = run_warm(control)

    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert token(first_log.log) == token(second_log.log)
    assert first_log.log.startswith("imported ")
    assert second_log.log == f"serving {token(first_log.log)} ok\n"
    assert second.result == first.result
    assert len(pool.pids()) == 1


def test_a_warm_run_gives_the_cold_runs_result_events_and_exit_code(
    write_pipeline, run_warm, run_job, data_file, sandbox_kind
):
    control = write_pipeline(CONTROL)
    data = data_file("one\ntwo\nthree\n")

    cold = run_job("run", control, input=data, params={"mode": "ok"})
    run_warm(control, input=data)
    warm, warm_log = run_warm(control, input=data)

    assert (
        warm.result
        == cold.outcome.result
        == {
            "columns": ["line", "length"],
            "data": [["one", 3], ["two", 3], ["three", 5]],
            "graphs": [],
            "text": "3 lines",
            "warnings": [],
        }
    )
    assert warm_log.events == cold.recorder.events
    assert (warm.status, warm.error, warm.exit_code) == (cold.outcome.status, None, cold.outcome.exit_code)


@pytest.mark.parametrize(
    "mode, error",
    [
        ("crash", "Pipeline process exited with status 3"),
        ("kill", "Pipeline process was killed by signal 9 (SIGKILL)"),
        ("exit", "SystemExit: pipeline called exit(4)"),
    ],
)
def test_a_pipeline_that_ends_its_process_fails_as_cold_and_the_next_run_gets_a_new_process(
    mode, error, write_pipeline, run_warm, run_job, pool, sandbox_kind
):
    control = write_pipeline(CONTROL)
    _, before = run_warm(control)

    failed, _ = run_warm(control, mode)
    after, after_log = run_warm(control)

    assert failed.status == "failed"
    assert failed.error == error == run_job("run", control, params={"mode": mode}).outcome.error
    assert after.status == "succeeded"
    assert token(after_log.log) != token(before.log)
    assert len(pool.pids()) == 1


def test_module_state_persists_between_runs_of_one_process_but_each_run_gets_a_fresh_model(
    write_pipeline, run_warm, run_job
):
    control = write_pipeline("""
        from mlopenapp.utils import io_handler as io
        CALLS = []

        def train(inpt, params=None):
            io.save_pipeline([({"calls": 0}, "counter")], [], "state")

        def run_pipeline(input, model, args, params=None):
            CALLS.append(1)
            model["calls"] += 1
            return {"text": f"globals={len(CALLS)} model={model['calls']}"}
        """)
    model = run_job("train", control).outcome.model_path

    texts = [run_warm(control, model_path=model)[0].result["text"] for _ in range(3)]

    assert texts == ["globals=1 model=1", "globals=2 model=1", "globals=3 model=1"]
    assert run_job("run", control, model_path=model).outcome.result["text"] == "globals=1 model=1"


def test_an_exception_fails_the_run_as_cold_and_keeps_the_process(write_pipeline, run_warm, run_job):
    control = write_pipeline(CONTROL)
    _, before = run_warm(control)

    failed, failed_log = run_warm(control, "fail")
    after, after_log = run_warm(control)

    assert failed.error == "ValueError: asked to fail" == run_job("run", control, params={"mode": "fail"}).outcome.error
    assert "Traceback" in failed_log.log
    assert after.status == "succeeded"
    assert token(after_log.log) == token(before.log)


def test_a_timeout_kills_the_warm_process_with_the_cold_error_and_the_next_run_gets_a_new_one(
    write_pipeline, run_warm, pool
):
    control = write_pipeline(CONTROL)
    _, before = run_warm(control)
    [pid] = pool.pids()

    timed_out, _ = run_warm(control, "sleep", timeout_s=1)
    after, after_log = run_warm(control)

    assert timed_out.status == "failed"
    assert timed_out.error.startswith("Run timed out after 1") and timed_out.error.endswith(" s (limit 1 s)")
    assert timed_out.duration_s < 3
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert after.status == "succeeded" and token(after_log.log) != token(before.log)


def test_cancelling_kills_the_warm_process_within_half_a_second(write_pipeline, run_warm):
    control = write_pipeline(CONTROL)
    run_warm(control)

    cancelled, recorder = run_warm(control, "sleep", cancel_after_s=0.5)

    assert (cancelled.status, cancelled.error) == ("cancelled", "Run was cancelled")
    assert time.monotonic() - recorder.cancel_requested_at < 0.5
    assert run_warm(control)[0].status == "succeeded"


def test_the_memory_limit_counts_the_warm_process_and_kills_it_with_the_cold_error(write_pipeline, run_warm):
    control = write_pipeline(CONTROL)

    hog, _ = run_warm(control, "hog", memory_mb=200)

    assert (hog.status, hog.error) == ("failed", "Run exceeded the memory limit of 200 MB")
    assert run_warm(control, memory_mb=200)[0].status == "succeeded"


def test_processes_a_run_leaves_behind_are_killed_when_it_ends(write_pipeline, run_warm, sandbox_kind):
    control = write_pipeline(CONTROL)
    marker = f"{random.randint(100000, 999999)}.5"

    spawned, _ = run_warm(control, "spawn", params={"marker": marker})

    assert spawned.status == "succeeded"
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and [
        p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]
    ]:
        time.sleep(0.05)
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]


def test_a_new_key_in_the_same_family_stops_the_old_process(write_pipeline, run_warm, pool):
    control = write_pipeline(CONTROL)
    run_warm(control, key=("v1", "model 1"))
    [old] = pool.pids()

    run_warm(control, key=("v1", "model 2"))

    assert pool.pids() != [old] and len(pool.pids()) == 1
    assert not psutil.pid_exists(old) or psutil.Process(old).status() == psutil.STATUS_ZOMBIE


def test_the_least_recently_used_process_goes_when_the_pool_is_full(write_pipeline, run_warm, pool):
    control = write_pipeline(CONTROL)
    run_warm(control, key="a", family="a")
    run_warm(control, key="b", family="b")
    [pid_a, pid_b] = pool.pids()
    run_warm(control, key="a", family="a")

    run_warm(control, key="c", family="c")

    assert pid_a in pool.pids() and pid_b not in pool.pids() and len(pool.pids()) == 2


def test_idle_processes_are_stopped(write_pipeline, run_warm, pool):
    control = write_pipeline(CONTROL)
    run_warm(control)
    [pid] = pool.pids()

    pool.reap_idle(now=time.monotonic() + pool.idle_seconds + 1)

    assert pool.pids() == []
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_the_input_is_a_read_only_copy_and_the_stored_file_is_untouched(write_pipeline, run_warm, data_file):
    control = write_pipeline("""
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            try:
                open(input.path, "a").write("x")
                wrote = "allowed"
            except OSError as exc:
                wrote = type(exc).__name__
            return {"text": f"{input.name} {wrote}"}
        """)
    data = data_file("a,b\n1,2\n")

    outcome, _ = run_warm(control, input=data)

    # Read-only twice over: the copy's mode, and (sandboxed) a read-only mount ("OSError": EROFS).
    assert outcome.result["text"] in ("datasets/data.csv PermissionError", "datasets/data.csv OSError")
    assert open(data["path"]).read() == "a,b\n1,2\n"


def test_only_run_jobs_whose_files_can_be_copied_go_warm(tmp_path):
    run = Job(kind="run", control_path="/c.py", work_dir=str(tmp_path))

    assert accepts(run)
    assert not accepts(Job(kind="train", control_path="/c.py", work_dir=str(tmp_path)))
    assert not accepts(Job(kind="run", control_path="/c.py", work_dir=str(tmp_path), readonly_paths=["/srv/x"]))


def test_an_import_error_fails_each_run_as_cold_does(write_pipeline, run_warm, run_job):
    control = write_pipeline(
        "import no_such_module_here\ndef train(i):\n    pass\ndef run_pipeline(i, m, a):\n    return {}\n"
    )

    first, _ = run_warm(control)
    second, _ = run_warm(control)

    cold = run_job("run", control).outcome
    assert first.error == second.error == cold.error == "ModuleNotFoundError: No module named 'no_such_module_here'"


def test_shutdown_stops_every_process(write_pipeline, run_warm, pool):
    control = write_pipeline(CONTROL)
    run_warm(control, key="a", family="a")
    run_warm(control, key="b", family="b")
    pids = pool.pids()

    pool.shutdown()

    assert pool.pids() == []
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not os.path.exists(pool.root)


def test_a_run_cannot_see_the_folders_of_earlier_runs_in_the_same_process(write_pipeline, run_warm):
    control = write_pipeline("""
        import os
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            return {"text": " ".join(sorted(os.listdir(os.path.dirname(os.getcwd()))))}
        """)

    first, _ = run_warm(control)
    second, _ = run_warm(control)

    # Its own folder (a name no earlier job could guess) and its /tmp; the job description and the
    # inputs are in a read-only folder beside.
    assert re.fullmatch(r"\.tmp job1-\w+", first.result["text"])
    assert re.fullmatch(r"\.tmp job2-\w+", second.result["text"])


# What a run can leave behind in a warm process that a cold run's process takes with it: each
# retires the process after the run (which keeps its own outcome), and the next run gets a new one.
POISON = """
    import os, signal, sys, threading, time, uuid

    TOKEN = uuid.uuid4().hex
    print("imported", TOKEN)
    KEPT = []

    def _grow(*_):
        KEPT.append(b"x" * (200 * 1024 * 1024))

    def _spin(*_):
        while True:
            pass

    # Signals the tests send while the process is idle: work nobody asked for, between runs.
    signal.signal(signal.SIGUSR1, _grow)
    signal.signal(signal.SIGUSR2, _spin)

    def _grow_forever():
        while True:
            KEPT.append(b"x" * (20 * 1024 * 1024))
            time.sleep(0.2)

    def train(inpt, params=None):
        pass

    def run_pipeline(input, model, args, params=None):
        mode = params.get("mode", "ok")
        print("serving", TOKEN, mode, flush=True)
        if mode == "devnull":
            sys.stdout = open(os.devnull, "w")
        if mode == "close1":
            os.close(1)
        if mode == "dup1":
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        if mode == "leak":
            KEPT.append(b"x" * (150 * 1024 * 1024))
        if mode == "thread-grow":
            threading.Thread(target=_grow_forever, daemon=True).start()
        if mode == "thread-spin":
            threading.Thread(target=_spin, daemon=True).start()
        if mode == "joined-thread":
            worker = threading.Thread(target=sum, args=([1, 2],))
            worker.start()
            worker.join()
        return {"text": mode}
"""


def _python_pid(pid: int) -> int:
    """The warm Python process in the tree started as `pid` (under bubblewrap, bwrap's child)."""
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return next(p.pid for p in reversed(tree) if os.path.basename(p.cmdline()[0]) != "bwrap")


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("mode", ["devnull", "close1", "dup1", "thread-grow", "thread-spin"])
def test_a_run_that_damages_stdio_or_leaves_a_thread_running_retires_its_process(
    mode, write_pipeline, run_warm, run_job, pool, caplog
):
    control = write_pipeline(POISON)
    _, before = run_warm(control)
    [pid] = pool.pids()

    poisoning, poisoning_log = run_warm(control, mode)
    after, after_log = run_warm(control)
    again, again_log = run_warm(control)

    assert poisoning.status == run_job("run", control, params={"mode": mode}).outcome.status
    assert poisoning_log.log.startswith(f"serving {token(before.log)} {mode}\n")
    assert f"warm process retired (pid {pid}): the job " in caplog.text
    assert _gone(pid)
    assert after.status == again.status == "succeeded"
    assert token(after_log.log) != token(before.log)
    assert after_log.log == f"imported {token(after_log.log)}\nserving {token(after_log.log)} ok\n"
    assert again_log.log == f"serving {token(after_log.log)} ok\n"


def test_a_run_whose_threads_have_ended_keeps_its_process(write_pipeline, run_warm, pool):
    control = write_pipeline(POISON)
    _, before = run_warm(control)

    joined, _ = run_warm(control, "joined-thread")
    after, after_log = run_warm(control)

    assert joined.status == after.status == "succeeded"
    assert token(after_log.log) == token(before.log)


def test_a_run_that_leaves_memory_behind_succeeds_and_the_next_run_is_not_blamed(
    write_pipeline, run_warm, pool, caplog
):
    control = write_pipeline(POISON)
    # Each run keeps 150 MB: kept, the process would be over the 300 MB limit by the third run.
    runs = [run_warm(control, "leak", memory_mb=300) for _ in range(3)]
    after, after_log = run_warm(control, memory_mb=300)

    assert [outcome.status for outcome, _ in runs] == ["succeeded"] * 3
    tokens = {token(recorder.log) for _, recorder in runs} | {token(after_log.log)}
    assert len(tokens) == 4
    assert after.status == "succeeded" and after_log.log.startswith("imported ")
    assert "MB in use, over the " in caplog.text


def test_a_process_that_grows_while_idle_is_stopped(write_pipeline, run_warm, pool):
    control = write_pipeline(POISON)
    _, before = run_warm(control, memory_mb=300)
    [pid] = pool.pids()

    os.kill(_python_pid(pid), signal.SIGUSR1)  # 200 MB, past halfway to the limit
    _reap_until_empty(pool)
    after, after_log = run_warm(control, memory_mb=300)

    assert _gone(pid)
    assert after.status == "succeeded" and token(after_log.log) != token(before.log)


def test_a_process_that_uses_cpu_while_idle_is_stopped(write_pipeline, run_warm, pool):
    control = write_pipeline(POISON)
    _, before = run_warm(control)
    [pid] = pool.pids()

    os.kill(_python_pid(pid), signal.SIGUSR2)  # spins forever
    _reap_until_empty(pool)
    after, after_log = run_warm(control)

    assert _gone(pid)
    assert after.status == "succeeded" and token(after_log.log) != token(before.log)


def _reap_until_empty(pool: WarmPool) -> None:
    deadline = time.monotonic() + 20
    while pool.pids() and time.monotonic() < deadline:
        pool.reap_idle()
        time.sleep(0.2)
    assert pool.pids() == []


def test_a_kept_process_leaves_the_next_run_at_least_half_the_room_a_fresh_one_would(tmp_path):
    process = _WarmProcess(tmp_path, Job(kind="run", control_path="/c.py", work_dir=""), "k", None)
    process.loaded_mb = 100.0

    assert process.memory_problem(300.0, 500) is None
    assert process.memory_problem(301.0, 500).startswith("301 MB in use, over the 300 MB")
    assert process.memory_problem(5000.0, None) is None
    process.loaded_mb = 600.0  # loaded over the limit (the job's limit is lower than the first's)
    assert process.memory_problem(500.0, 500) is not None


def test_a_failed_runs_traceback_starts_at_the_pipelines_code_and_is_the_same_cold_and_warm(
    write_pipeline, run_warm, run_job
):
    control = write_pipeline(
        """
        import helper

        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            try:
                helper.divide()
            except ZeroDivisionError as exc:
                raise ValueError("could not divide") from exc
        """,
        files={"helper.py": "def divide():\n    return 1 / 0\n"},
    )
    run_warm(control)

    warm_log = run_warm(control)[1].log
    cold_log = run_job("run", control).recorder.log

    assert (
        warm_log
        == cold_log
        == f"""\
Traceback (most recent call last):
  File "{control}", line 9, in run_pipeline
    helper.divide()
  File "{os.path.dirname(control)}/helper.py", line 2, in divide
    return 1 / 0
           ~~^~~
ZeroDivisionError: division by zero

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "{control}", line 11, in run_pipeline
    raise ValueError("could not divide") from exc
ValueError: could not divide
"""
    )


def test_a_failure_outside_the_pipelines_code_shows_only_the_error(write_pipeline, run_warm, run_job):
    control = write_pipeline("def train(inpt, params=None):\n    pass\n")

    warm, warm_log = run_warm(control)

    assert warm.error == "AttributeError: the control file defines no run_pipeline() function"
    assert warm_log.log == run_job("run", control).recorder.log == f"{warm.error}\n"


def test_an_unterminated_line_on_the_replies_pipe_cannot_grow_the_worker():
    # Pipeline code can find the replies descriptor and write to it; only a short line can be a reply.
    watch = _WarmRun.__new__(_WarmRun)
    watch.replies, watch.done, watch.warm = b"", None, SimpleNamespace(jobs=1)
    for _ in range(40):
        watch._on_replies(b"x" * 64 * 1024)
        assert len(watch.replies) <= MAX_REPLY_BYTES
    watch._on_replies(b'\n{"done": 1, "retire": false}\n')

    assert watch.done == {"done": 1, "retire": False}
