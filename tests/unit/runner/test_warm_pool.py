"""Warm processes: reused for run jobs of one pipeline version and model, same outcomes as cold.

Real child processes, no Django. Each control file prints a token made when it is imported, so a
run's log says which process served it.
"""

from __future__ import annotations

import os
import random
import time

import psutil
import pytest

from mlopen_runner import Job
from mlopen_runner.warm_pool import WarmPool, accepts

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
        job = Job(kind="run", control_path=control, work_dir=str(tmp_path / f"work{next(counter)}"),
                  params={"mode": mode, **fields.pop("params", {})}, **fields)
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


def test_a_warm_run_gives_the_cold_runs_result_events_and_exit_code(write_pipeline, run_warm, run_job, data_file,
                                                                     sandbox_kind):
    control = write_pipeline(CONTROL)
    data = data_file("one\ntwo\nthree\n")

    cold = run_job("run", control, input=data, params={"mode": "ok"})
    run_warm(control, input=data)
    warm, warm_log = run_warm(control, input=data)

    assert warm.result == cold.outcome.result == {
        "columns": ["line", "length"], "data": [["one", 3], ["two", 3], ["three", 5]], "graphs": [],
        "text": "3 lines", "warnings": []}
    assert warm_log.events == cold.recorder.events
    assert (warm.status, warm.error, warm.exit_code) == (cold.outcome.status, None, cold.outcome.exit_code)


@pytest.mark.parametrize("mode, error", [
    ("crash", "Pipeline process exited with status 3"),
    ("kill", "Pipeline process was killed by signal 9 (SIGKILL)"),
    ("exit", "SystemExit: pipeline called exit(4)"),
])
def test_a_pipeline_that_ends_its_process_fails_as_cold_and_the_next_run_gets_a_new_process(
        mode, error, write_pipeline, run_warm, run_job, pool, sandbox_kind):
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
        write_pipeline, run_warm, run_job):
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
        write_pipeline, run_warm, pool):
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
    while time.monotonic() < deadline and [p for p in psutil.process_iter(["cmdline"])
                                           if p.info["cmdline"] == ["sleep", marker]]:
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

    assert outcome.result["text"] == "datasets/data.csv PermissionError"
    assert open(data["path"]).read() == "a,b\n1,2\n"


def test_only_run_jobs_whose_files_can_be_copied_go_warm(tmp_path):
    run = Job(kind="run", control_path="/c.py", work_dir=str(tmp_path))

    assert accepts(run)
    assert not accepts(Job(kind="train", control_path="/c.py", work_dir=str(tmp_path)))
    assert not accepts(Job(kind="run", control_path="/c.py", work_dir=str(tmp_path), readonly_paths=["/srv/x"]))


def test_an_import_error_fails_each_run_as_cold_does(write_pipeline, run_warm, run_job):
    control = write_pipeline("import no_such_module_here\ndef train(i):\n    pass\n"
                             "def run_pipeline(i, m, a):\n    return {}\n")

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

    assert first.result["text"] == "job1 warm.json"
    assert second.result["text"] == "job2 warm.json"
