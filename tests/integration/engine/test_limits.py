"""Limits the worker enforces on pipeline code: time, memory, crashes of the pipeline process, and
the sandbox's walls. One real worker serves the module; it must survive everything done here.
"""

from __future__ import annotations

import re

import pytest

from mlopen.pipelines.models import Pipeline
from mlopen_runner import sandbox_status

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

SLEEPER = """
import time
def train(inpt, params=None):
    pass
def run_pipeline(input, model, args, params=None):
    print("sleeping", flush=True)
    time.sleep(120)
    return {"text": "woke up"}
"""

QUICK = """
def train(inpt, params=None):
    pass
def run_pipeline(input, model, args, params=None):
    return {"text": "done"}
"""


def test_a_run_over_the_timeout_it_asked_for_fails_within_seconds_saying_how_long_it_ran(
    pipeline_from, submit, wait_for_run, module_worker
):
    pipeline_from("sleeper", SLEEPER)

    run = wait_for_run(submit("sleeper", timeout=2)["id"], timeout=30)

    assert run.status == "failed"
    assert re.fullmatch(r"Run timed out after 2(\.\d)? s \(limit 2 s\)", run.error), run.error
    assert run.timeout_seconds == 2
    assert run.duration_seconds < 6


def test_a_requested_timeout_is_capped_by_the_pipelines_own(pipeline_from, submit, unserved_queue):
    pipeline_from("sleeper", SLEEPER)
    # On a queue no worker serves: no run may still be going when the test's tables are emptied.
    Pipeline.objects.filter(name="sleeper").update(timeout_seconds=5, queue=unserved_queue)

    assert submit("sleeper", timeout=600)["timeout_seconds"] == 5


def test_a_run_over_its_pipelines_memory_limit_fails_naming_the_limit_and_the_worker_carries_on(
    pipeline_from, submit, wait_for_run, module_worker
):
    pipeline_from(
        "hog",
        """
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            blocks = []
            while True:
                blocks.append(b"x" * (8 * 1024 * 1024))  # written, so it counts in RSS
        """,
    )
    Pipeline.objects.filter(name="hog").update(memory_mb=300)
    pipeline_from("quick", QUICK)

    hog = wait_for_run(submit("hog")["id"], timeout=60)
    after = wait_for_run(submit("quick")["id"], timeout=60)

    assert hog.status == "failed"
    assert hog.error == "Run exceeded the memory limit of 300 MB"
    assert module_worker.process.poll() is None
    assert after.status == "succeeded" and after.worker == module_worker.name


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ("os.kill(os.getpid(), signal.SIGKILL)", "Pipeline process was killed by signal 9 (SIGKILL)"),
        ("ctypes.string_at(0)", "Pipeline process was killed by signal 11 (SIGSEGV)"),
        ("os._exit(3)", "Pipeline process exited with status 3"),
    ],
)
def test_a_pipeline_process_that_dies_fails_its_run_with_the_exit_status_and_the_worker_carries_on(
    how, error, pipeline_from, submit, wait_for_run, module_worker
):
    pipeline_from(
        "crasher",
        f"""
        import ctypes, os, signal
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            {how}
        """,
    )
    pipeline_from("quick", QUICK)

    crashed = wait_for_run(submit("crasher")["id"], timeout=60)
    after = wait_for_run(submit("quick")["id"], timeout=60)

    assert crashed.status == "failed"
    assert crashed.error == error
    assert module_worker.process.poll() is None
    assert after.status == "succeeded"


WALLS = """
import json, os

def probe(inpt):
    attempts = {
        "read /etc/shadow": ("/etc/shadow", "r"),
        "write /etc": ("/etc/mlopen-was-here", "w"),
        "write /": ("/mlopen-was-here", "w"),
        "write the code folder": (os.path.join(os.path.dirname(os.path.abspath(__file__)), "was-here.txt"), "w"),
        "write /usr": ("/usr/mlopen-was-here", "w"),
        "write the input": (inpt.path, "a"),
        "write the run folder": ("was-here.txt", "w"),
    }
    outcome = {}
    for what, (path, mode) in attempts.items():
        try:
            with open(path, mode) as handle:
                handle.write("x") if mode != "r" else handle.read()
            outcome[what] = "allowed"
        except OSError as exc:
            outcome[what] = type(exc).__name__
    print("WALLS " + json.dumps(outcome), flush=True)
    print("ETC " + json.dumps(sorted(os.listdir("/etc"))), flush=True)

def train(inpt, params=None):
    probe(inpt)

def run_pipeline(input, model, args, params=None):
    return {}
"""


def _json_line(log: str, prefix: str):
    import json

    [line] = [line for line in log.splitlines() if line.startswith(prefix + " ")]
    return json.loads(line[len(prefix) + 1 :])


@pytest.mark.skipif(sandbox_status()["kind"] != "bubblewrap", reason="needs bubblewrap: " + sandbox_status()["reason"])
def test_a_sandboxed_pipeline_cannot_read_etc_shadow_nor_write_outside_its_run_folder(
    pipeline_from, submit, wait_for_run, upload_dataset, module_worker
):
    from mlopen.core import storage
    from mlopen.datasets.models import Dataset
    from mlopen.pipelines.models import PipelineVersion

    pipeline_from("walls", WALLS)
    dataset = upload_dataset("data.csv", b"a,b\n1,2\n")

    run = wait_for_run(submit("walls", kind="train", input=dataset["id"])["id"], timeout=60)

    assert run.status == "succeeded", run.error
    walls = _json_line(run.log, "WALLS")
    assert walls.pop("write the run folder") == "allowed"
    assert walls["read /etc/shadow"] == "FileNotFoundError"
    assert set(walls.values()) <= {"OSError", "PermissionError", "FileNotFoundError"}, walls
    # Of /etc only what Python needs: no shadow, gshadow, ssl/private, machine-id...
    etc = set(_json_line(run.log, "ETC"))
    assert etc <= {
        "ld.so.cache",
        "localtime",
        "timezone",
        "alternatives",
        "ssl",
        "ca-certificates",
        "pki",
        "mime.types",
        "fonts",
        "passwd",
        "group",
    }, etc
    assert {"passwd", "group", "ld.so.cache"} <= etc
    stored = Dataset.objects.get(pk=dataset["id"])
    assert storage.local_path(stored.file).read_bytes() == b"a,b\n1,2\n"
    version = PipelineVersion.objects.get(pipeline__name="walls")
    assert not (storage.local_path(version.control_storage_name).parent / "was-here.txt").exists()
