"""Blank processes on a real worker: the first run of a new pipeline is served by a sandboxed process
that imported pandas before the run came; two users' runs never share one; a blank process that is
killed is replaced, and the runs go on.

The control file says, when it is imported, whether pandas was imported before it ("preloaded",
only in a blank process) and prints a token kept on the pandas module: two runs printing the same
token ran in the same process, whichever pipeline they belong to.
"""

from __future__ import annotations

import re
import signal
import time

import psutil
import pytest

from mlopen.runs.models import Run

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

# Only pandas, so the worker's blank process is ready in about a second.
WORKER_ENV = {"MLOPEN_PREIMPORT_POOL": "1", "MLOPEN_PREIMPORT_MODULES": "pandas"}

SOURCE = """
import sys, uuid
PRELOADED = "pandas" in sys.modules
import pandas
from mlopenapp.utils import io_handler as io

TOKEN = pandas.__dict__.setdefault("_test_process_token", uuid.uuid4().hex)
print("imported", "preloaded" if PRELOADED else "fresh", flush=True)

def train(inpt, params=None):
    io.save_pipeline([(2, "factor")], [("rows", "unit")], "blank")

def run_pipeline(input, model, args, params=None):
    print("serving", TOKEN, flush=True)
    lines = [line for line in input.read().decode().splitlines() if line]
    return {"columns": ["n"], "data": [[len(lines) * model]], "text": args["unit"]}
"""


@pytest.fixture
def finished(wait_for_run, module_worker):
    def wait(run_id: int, timeout: float = 60) -> Run:
        try:
            run = wait_for_run(run_id, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker log:\n{module_worker.log_text()[-4000:]}") from None
        assert run.status == "succeeded", f"{run.error}\n{run.log}\n--- worker log:\n{module_worker.log_text()[-3000:]}"
        return run

    return wait


@pytest.fixture
def trained_for(multipart_body, submit, finished, upload_dataset):
    """A user's own pipeline, uploaded and trained, and a dataset of theirs: (pipeline name, dataset id)."""

    def make(name: str, client) -> tuple[str, int]:
        body, content_type = multipart_body({}, [("control", f"{name}.py", SOURCE.encode())])
        response = client.generic("POST", "/api/v1/pipelines/", body, content_type)
        assert response.status_code == 201, response.content
        finished(submit(name, kind="train", client=client)["id"])
        dataset = upload_dataset(f"{name}.txt", b"a\nb\nc\n", client=client)
        return name, dataset["id"]

    return make


def _token(run: Run) -> str:
    [line] = [line for line in run.log.splitlines() if line.startswith("serving ")]
    return line.split()[1]


def _blank_pids(log: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"preimported process started \(pid (\d+)\)", log)]


def _ready_blank(worker, timeout: float = 60) -> int:
    """The pid of the worker's newest blank process, once the worker has seen it ready (a run takes
    only a ready one; the worker looks once a second) and no run has taken it yet (just after a run
    took one, the newest in the log may still be that one, its replacement not started yet)."""
    deadline = time.monotonic() + timeout
    while True:
        log = worker.log_text()
        pids = _blank_pids(log)
        if (
            pids
            and f"preimported process ready (pid {pids[-1]})" in log
            and f"preimported process taken (pid {pids[-1]})" not in log
        ):
            return pids[-1]
        assert time.monotonic() < deadline, log[-3000:]
        time.sleep(0.2)


def test_the_first_run_of_a_new_pipeline_takes_a_preimported_process(api, trained_for, submit, finished, module_worker):
    name, dataset = trained_for("first", api)
    _ready_blank(module_worker)

    run = finished(submit(name, input=dataset)["id"])

    assert run.log.splitlines()[0] == "imported preloaded"
    assert run.result_rows == 1
    assert re.search(rf"run {run.pk}: preimported process taken \(pid \d+\)", module_worker.log_text())


def test_two_users_runs_never_share_a_preimported_process(
    api, api_for, author, trained_for, submit, finished, module_worker
):
    theirs = api_for(author)
    mine_name, mine_data = trained_for("mine", api)
    theirs_name, theirs_data = trained_for("theirs", theirs)

    _ready_blank(module_worker)
    mine = finished(submit(mine_name, input=mine_data)["id"])
    _ready_blank(module_worker)  # the one started after that run
    other = finished(submit(theirs_name, input=theirs_data, client=theirs)["id"])
    mine_again = finished(submit(mine_name, input=mine_data)["id"])

    assert "imported preloaded" in mine.log and "imported preloaded" in other.log
    assert _token(mine) != _token(other)
    assert _token(mine_again) == _token(mine)  # the taken process became that user's warm process
    log = module_worker.log_text()
    taken = {run.pk: re.search(rf"run {run.pk}: preimported process taken \(pid (\d+)\)", log) for run in (mine, other)}
    assert all(taken.values()), log[-3000:]
    assert taken[mine.pk].group(1) != taken[other.pk].group(1)


def test_a_killed_preimported_process_is_replaced_and_runs_go_on(api, trained_for, submit, finished, module_worker):
    name, dataset = trained_for("killed", api)
    victim = _ready_blank(module_worker)
    root = psutil.Process(victim)
    tree = [root, *root.children(recursive=True)]  # bwrap and the Python inside its sandbox
    for process in tree:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree[1:], timeout=10)

    run = finished(submit(name, input=dataset)["id"])

    assert run.result_rows == 1
    deadline = time.monotonic() + 30
    while True:
        log = module_worker.log_text()
        after = log[log.rindex(f"preimported process started (pid {victim})") :]
        if f"preimported process (pid {victim}) died" in after and _blank_pids(after)[1:]:
            break
        assert time.monotonic() < deadline, after[-3000:]
        time.sleep(0.2)
    assert victim not in _blank_pids(after)[1:]
