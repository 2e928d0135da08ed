"""Blank processes: a run with no warm process takes one that already imported the runtime's packages.

Real child processes, no Django. The control file says, when it is imported, whether pandas was
already imported before it (only in a blank process) and prints a token made then: two runs with
the same token were served by the same process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil
import pytest

from mlopen_runner import Job, preimport, warm_pool
from mlopen_runner.warm import preimport_modules
from mlopen_runner.warm_pool import WarmPool

CONTROL = """
    import sys, uuid
    PRELOADED = "pandas" in sys.modules
    import pandas
    from mlopenapp.utils import io_handler as io

    TOKEN = uuid.uuid4().hex
    print("imported", TOKEN, "preloaded" if PRELOADED else "fresh")

    def train(inpt, params=None):
        io.save_pipeline([(3, "factor")], [("rows", "unit")], "blank")

    def run_pipeline(input, model, args, params=None):
        print("serving", TOKEN)
        frame = pandas.read_csv(input)
        return {"columns": ["total"], "data": [[int(frame["a"].sum()) * model]], "text": args["unit"]}
"""


class Recorder:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def output(self, text: str) -> None:
        self.texts.append(text)

    def event(self, event: dict) -> None:
        pass

    def tick(self) -> bool:
        return False

    @property
    def log(self) -> str:
        return "".join(self.texts)


@pytest.fixture
def pool(tmp_path, monkeypatch):
    # The background thread looks for dead blank processes only when woken: a test decides when.
    monkeypatch.setattr(preimport, "CHECK_S", 3600.0)
    warm = WarmPool(
        tmp_path / "warm", max_processes=4, idle_seconds=60, blank_pool_size=1, preimport_modules=["pandas"]
    )
    yield warm
    warm.shutdown()


@pytest.fixture
def trained(write_pipeline, run_job, data_file):
    """(control file, model file, input) of the CONTROL pipeline trained cold."""
    control = write_pipeline(CONTROL)
    data = data_file("a\n1\n2\n")
    trained = run_job("train", control, input=data)
    assert trained.outcome.status == "succeeded", trained.outcome.error
    return control, trained.outcome.model_path, data


def job_for(control: str, model: str | None, data: dict, work: str) -> Job:
    return Job(kind="run", control_path=control, work_dir=work, input=data, model_path=model, timeout_s=30)


def blank_pids(pool: WarmPool, count: int = 1, timeout: float = 30) -> list[int]:
    """The pids of the pool's blank processes once `count` are there and done importing."""
    deadline = time.monotonic() + timeout
    while len(pool.blanks.pids()) < count:
        assert time.monotonic() < deadline, "no blank process was started"
        time.sleep(0.02)
    with pool.blanks.lock:
        processes = [p for runtime in pool.blanks.runtimes.values() for p in runtime.processes]
    for process in processes:
        assert process.wait_ready(max(0.0, deadline - time.monotonic())), "the blank process never got ready"
    return pool.blanks.pids()


def run(pool: WarmPool, job: Job, owner: str, keep: bool = True) -> tuple:
    recorder = Recorder()
    outcome = pool.execute(job, recorder, key=(owner, job.control_path, job.model_path), family=(owner,), keep=keep)
    return outcome, recorder.log


def kill_tree(pid: int) -> None:
    """SIGKILL a blank process and everything in its sandbox, and wait until all of it is gone."""
    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree[1:], timeout=10)
    deadline = time.monotonic() + 10
    while root.is_running() and root.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def token(log: str) -> str:
    return next(line.split()[1] for line in log.splitlines() if line.startswith("serving "))


def test_a_first_run_takes_a_blank_process_that_imported_pandas_and_a_new_blank_one_replaces_it(
    pool, trained, tmp_path, run_job, sandbox_kind
):
    control, model, data = trained
    job = job_for(control, model, data, str(tmp_path / "w1"))
    pool.prepare(job)
    [blank] = blank_pids(pool)

    outcome, log = run(pool, job, "alice")
    again, again_log = run(pool, job_for(control, model, data, str(tmp_path / "w2")), "alice")
    cold = run_job("run", control, input=data, model_path=model)

    assert outcome.status == "succeeded", outcome.error
    assert "preloaded" in log.splitlines()[0]
    assert outcome.result == cold.outcome.result == again.result
    assert outcome.result["data"] == [[9]]  # 1 + 2 times the trained factor 3
    assert "fresh" in cold.recorder.log.splitlines()[0]
    assert token(again_log) == token(log)  # the taken process is alice's warm process now
    assert pool.pids() == [blank]
    assert pool.blanks.taken == 1
    [replacement] = blank_pids(pool)
    assert replacement != blank


def test_a_warm_process_made_from_a_blank_one_is_stopped_once_idle_too(trained, tmp_path, monkeypatch):
    # The idle reaper used to start only with a warm process started from nothing, so with the
    # default pool (every first run takes a blank process) an idle one was never stopped.
    monkeypatch.setattr(preimport, "CHECK_S", 3600.0)
    control, model, data = trained
    pool = WarmPool(tmp_path / "warm", idle_seconds=0.5, blank_pool_size=1, preimport_modules=["pandas"])
    try:
        job = job_for(control, model, data, str(tmp_path / "w1"))
        pool.prepare(job)
        [blank] = blank_pids(pool)
        outcome, log = run(pool, job, "alice")
        assert outcome.status == "succeeded", outcome.error
        assert "preloaded" in log and pool.pids() == [blank]

        deadline = time.monotonic() + 30
        while pool.pids() or (psutil.pid_exists(blank) and psutil.Process(blank).status() != psutil.STATUS_ZOMBIE):
            assert time.monotonic() < deadline, "the idle warm process was never stopped"
            time.sleep(0.05)
    finally:
        pool.shutdown()


def test_two_owners_never_share_a_blank_process(pool, trained, tmp_path):
    control, model, data = trained
    pool.prepare(job_for(control, model, data, str(tmp_path / "w0")))
    [first_blank] = blank_pids(pool)

    alice, alice_log = run(pool, job_for(control, model, data, str(tmp_path / "w1")), "alice")
    [second_blank] = blank_pids(pool)
    bob, bob_log = run(pool, job_for(control, model, data, str(tmp_path / "w2")), "bob")

    assert (alice.status, bob.status) == ("succeeded", "succeeded")
    assert "preloaded" in alice_log and "preloaded" in bob_log
    assert token(alice_log) != token(bob_log)
    assert first_blank != second_blank
    assert sorted(pool.pids()) == sorted([first_blank, second_blank])  # each owner's warm process
    assert pool.blanks.taken == 2
    assert not set(pool.blanks.pids()) & set(pool.pids())  # a taken process never goes back


def test_a_killed_blank_process_makes_the_run_start_fresh_and_is_replaced(pool, trained, tmp_path):
    control, model, data = trained
    pool.prepare(job_for(control, model, data, str(tmp_path / "w0")))
    [blank] = blank_pids(pool)
    kill_tree(blank)

    outcome, log = run(pool, job_for(control, model, data, str(tmp_path / "w1")), "alice")

    assert outcome.status == "succeeded", outcome.error
    assert "fresh" in log.splitlines()[0]
    assert outcome.result["data"] == [[9]]
    assert pool.blanks.replaced == 1
    assert pool.blanks.taken == 0
    [replacement] = blank_pids(pool)
    assert replacement not in (blank, *pool.pids())


def test_a_blank_process_that_dies_while_waiting_is_replaced_by_the_background_thread(pool, trained, tmp_path):
    control, model, data = trained
    pool.prepare(job_for(control, model, data, str(tmp_path / "w0")))
    [blank] = blank_pids(pool)
    os.kill(blank, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pool.blanks.pids() in ([], [blank]):
        assert time.monotonic() < deadline, "the dead blank process was not replaced"
        pool.blanks.refill()  # what the thread's own check (every CHECK_S) would do
        time.sleep(0.05)

    assert pool.blanks.replaced == 1
    [replacement] = blank_pids(pool)  # once it is ready
    outcome, log = run(pool, job_for(control, model, data, str(tmp_path / "w1")), "alice")
    assert "preloaded" in log
    assert pool.pids() == [replacement]


def test_with_warm_runs_off_the_blank_process_serves_one_run_and_stops(pool, trained, tmp_path):
    control, model, data = trained
    pool.prepare(job_for(control, model, data, str(tmp_path / "w0")))
    blank_pids(pool)

    first, first_log = run(pool, job_for(control, model, data, str(tmp_path / "w1")), "alice", keep=False)
    blank_pids(pool)
    second, second_log = run(pool, job_for(control, model, data, str(tmp_path / "w2")), "alice", keep=False)

    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert "preloaded" in first_log and "preloaded" in second_log
    assert token(first_log) != token(second_log)
    assert pool.pids() == []


def test_without_a_blank_process_and_warm_runs_off_the_run_is_cold(tmp_path, trained):
    control, model, data = trained
    pool = WarmPool(tmp_path / "warm", blank_pool_size=0)
    try:
        outcome, log = run(pool, job_for(control, model, data, str(tmp_path / "w1")), "alice", keep=False)
    finally:
        pool.shutdown()
    assert outcome.status == "succeeded"
    assert "fresh" in log
    assert pool.pids() == [] and pool.blanks.pids() == []


def test_a_run_that_finds_the_blank_process_still_importing_starts_fresh_and_leaves_it(pool, trained, tmp_path):
    control, model, data = trained
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "slow_import.py").write_text("import time\ntime.sleep(60)\n")  # longer than the run takes
    pool.preimport_modules = ["pandas", "slow_import"]

    def job(work: str) -> Job:
        return Job(**{**job_for(control, model, data, work).__dict__, "extra_pythonpath": [str(slow)]})

    pool.prepare(job(str(tmp_path / "w0")))
    deadline = time.monotonic() + 10
    while not pool.blanks.pids():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    [blank] = pool.blanks.pids()

    outcome, log = run(pool, job(str(tmp_path / "w1")), "alice")

    assert outcome.status == "succeeded"
    assert "fresh" in log
    assert pool.blanks.pids() == [blank]
    assert (pool.blanks.taken, pool.blanks.replaced) == (0, 0)


def test_a_control_folder_too_big_to_copy_gets_a_fresh_process(pool, trained, tmp_path, monkeypatch):
    control, model, data = trained
    pool.prepare(job_for(control, model, data, str(tmp_path / "w0")))
    [blank] = blank_pids(pool)
    monkeypatch.setattr(warm_pool, "MAX_COPIED_CODE_MB", 0)

    outcome, log = run(pool, job_for(control, model, data, str(tmp_path / "w1")), "alice")

    assert outcome.status == "succeeded"
    assert "fresh" in log
    assert pool.blanks.pids() == [blank]  # still blank, for a run it fits


def test_a_blank_process_sandbox_binds_no_pipeline_model_or_dataset(pool, trained, tmp_path, requires_bubblewrap):
    control, model, data = trained
    pool.prepare(job_for(control, model, data, str(tmp_path / "w0")))
    blank_pids(pool)
    [blank] = [p for runtime in pool.blanks.runtimes.values() for p in runtime.processes]

    argv = blank.launch.argv
    bound = {argv[i + 1] for i, flag in enumerate(argv) if flag in ("--bind", "--ro-bind", "--ro-bind-try")}

    # Of this test's folder (which holds the pipeline, the model and the dataset) only the blank
    # process's own two folders are bound, and its /tmp inside its work folder.
    assert {path for path in bound if path.startswith(str(tmp_path))} == {
        str(blank.inputs),
        str(blank.work),
        str(blank.work / ".tmp"),
    }
    assert not any(path.startswith(os.path.dirname(control)) for path in bound)
    assert model not in bound and data["path"] not in bound


def test_a_runtime_lacking_a_package_skips_it():
    assert preimport_modules(["json", "no_such_package_here", "no_such_package_here.sub", "email.parser"]) == [
        "json",
        "email.parser",
    ]


def test_a_different_runtime_or_limit_gets_its_own_blank_processes(trained, tmp_path):
    control, model, data = trained
    base = job_for(control, model, data, str(tmp_path / "w0"))
    assert preimport.blank_key(base) == preimport.blank_key(job_for(control, None, data, str(tmp_path / "w9")))
    for other in (
        Job(**{**base.__dict__, "memory_mb": 512}),
        Job(**{**base.__dict__, "allow_network": True}),
        Job(**{**base.__dict__, "python": "/other/python"}),
        Job(**{**base.__dict__, "extra_pythonpath": ["/overlay"]}),
    ):
        assert preimport.blank_key(other) != preimport.blank_key(base)
