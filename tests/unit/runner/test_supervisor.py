"""The parent side: limits, signals, cancelling, the log cap and the child's environment."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time

import psutil

import mlopen_runner
import mlopenapp
from mlopen_runner import Job, execute

NO_TRAIN = "\ndef run_pipeline(input, model, args, params=None):\n    return {}\n"


def train_doing(body: str, imports: str = "") -> str:
    """A control file whose train runs `body` (one line per statement, indented by us)."""
    indented = textwrap.indent(textwrap.dedent(body).strip(), "    ")
    return f"{imports}\ndef train(inpt, params=None):\n{indented}\n{NO_TRAIN}"


def test_a_pipeline_killed_by_a_signal_is_reported_with_the_signal_name(write_pipeline, run_job, sandbox_kind):
    control = write_pipeline(train_doing("os.kill(os.getpid(), 9)", "import os"))

    ran = run_job("train", control)

    assert ran.outcome.status == "failed"
    assert ran.outcome.error == "Pipeline process was killed by signal 9 (SIGKILL)"


def test_os_exit_is_reported_with_its_exit_status(write_pipeline, run_job):
    control = write_pipeline(train_doing("os._exit(3)", "import os"))

    ran = run_job("train", control)

    assert ran.outcome.error == "Pipeline process exited with status 3"
    assert ran.outcome.exit_code == 3


def test_a_run_that_exits_cleanly_without_its_result_fails(write_pipeline, run_job):
    control = write_pipeline(
        "import os\ndef train(inpt, params=None):\n    pass\n"
        "def run_pipeline(input, model, args, params=None):\n    os._exit(0)\n"
    )

    ran = run_job("run", control)

    assert ran.outcome.error == "Pipeline process exited without writing result.json"


def test_a_run_over_its_time_limit_is_killed_and_the_error_names_the_limit(write_pipeline, run_job):
    control = write_pipeline(train_doing("time.sleep(60)", "import time"))

    ran = run_job("train", control, timeout_s=1)

    assert ran.outcome.status == "failed"
    assert ran.outcome.error.startswith("Run timed out after 1")
    assert ran.outcome.error.endswith("s (limit 1 s)")
    assert ran.outcome.duration_s < 3


def test_a_timeout_kills_the_grandchildren_too(write_pipeline, run_job, sandbox_kind):
    # One grandchild stays in the process group; the other leaves it with setsid().
    marker = f"{random.randint(100000, 999999)}.5"
    control = write_pipeline(
        train_doing(
            f'''
        subprocess.Popen(["sleep", "{marker}"])
        subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
        time.sleep(60)
        ''',
            "import subprocess, time",
        )
    )

    ran = run_job("train", control, timeout_s=1)

    assert ran.outcome.error.endswith("(limit 1 s)")
    assert ran.outcome.duration_s < 3
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]


def test_a_run_that_allocates_without_bound_is_stopped_at_the_memory_limit(write_pipeline, run_job, sandbox_kind):
    control = write_pipeline(
        train_doing("""
        chunks = []
        while True:
            chunks.append(b"x" * 10_000_000)
        """)
    )

    ran = run_job("train", control, memory_mb=200)

    assert ran.outcome.status == "failed"
    assert "Run exceeded the memory limit of 200 MB" in ran.outcome.error
    assert ran.outcome.duration_s < 5


def test_a_memory_error_in_the_child_also_names_the_limit(write_pipeline, run_job):
    # 10 GB at once is past the address-space backstop, so it fails before the RSS watch sees it.
    control = write_pipeline(train_doing("bytearray(10 * 1024 ** 3)"))

    ran = run_job("train", control, memory_mb=200)

    assert ran.outcome.error == "MemoryError: Run exceeded the memory limit of 200 MB"


def test_numpy_and_pandas_still_load_under_a_200_mb_limit(write_pipeline, run_job, data_file):
    control = write_pipeline(
        train_doing(
            """
        frame = pandas.read_csv(inpt)
        print(numpy.asarray(frame["a"]).sum())
        """,
            "import numpy, pandas",
        )
    )

    ran = run_job("train", control, memory_mb=200, input=data_file("a\n1\n2\n"))

    assert ran.outcome.status == "succeeded", ran.log
    assert ran.log == "3\n"
    assert 30 < ran.outcome.peak_rss_mb < 200


def test_tick_returning_true_cancels_the_run_within_half_a_second(write_pipeline, run_job):
    control = write_pipeline(train_doing("time.sleep(60)", "import time"))

    ran = run_job("train", control, cancel_after_s=0.3)

    assert ran.outcome.status == "cancelled"
    assert ran.finished_at - ran.recorder.cancel_requested_at < 0.5


def test_output_over_the_log_cap_keeps_head_and_tail_and_says_what_was_dropped(write_pipeline, run_job):
    control = write_pipeline(train_doing('for number in range(500):\n    print(f"line {number:04}")'))

    ran = run_job("train", control, max_log_bytes=1000)

    dropped = 500 * len("line 0000\n") - 1000
    assert ran.outcome.log_truncated_bytes == dropped
    head, tail = ran.log.split(f"\n[... {dropped} bytes of output dropped ...]\n")
    assert head.startswith("line 0000\nline 0001\n") and len(head) == 500
    assert tail.endswith("line 0498\nline 0499\n") and len(tail) == 500


def test_output_is_delivered_while_the_run_is_still_going(write_pipeline, run_job):
    control = write_pipeline(train_doing('print("early")\ntime.sleep(1.2)\nprint("late")', "import time"))

    ran = run_job("train", control)

    assert ran.recorder.texts[0] == "early\n"
    assert ran.log == "early\nlate\n"


def test_a_result_over_the_size_cap_fails_the_run(write_pipeline, run_job):
    control = write_pipeline(
        "def train(inpt, params=None):\n    pass\n"
        "def run_pipeline(input, model, args, params=None):\n    return {'text': 'x' * 4900}\n"
    )

    ran = run_job("run", control, max_result_bytes=2048)

    assert ran.outcome.status == "failed"
    assert ran.outcome.error.startswith("result.json is 4.9 KB, over the 2 KB limit")


def test_the_child_environment_carries_no_secrets_of_the_parent(write_pipeline, run_job, monkeypatch, sandbox_kind):
    monkeypatch.setenv("DATABASE_URL", "postgres://secret")
    monkeypatch.setenv("DJANGO_SECRET_KEY", "secret")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://secret")
    control = write_pipeline(train_doing("print(json.dumps(dict(os.environ)))", "import json, os"))

    ran = run_job("train", control)

    environment = json.loads(ran.log)
    assert not {"DATABASE_URL", "DJANGO_SECRET_KEY", "CELERY_BROKER_URL"} & set(environment)
    assert environment["HOME"] == ran.job.work_dir
    assert environment["MPLBACKEND"] == "Agg"
    assert environment["OMP_NUM_THREADS"] == environment["OPENBLAS_NUM_THREADS"] == "2"
    assert "MLOPEN_EVENTS_FD" not in environment  # the child takes it for the SDK


def test_outputs_left_by_an_earlier_job_in_the_same_folder_are_not_reported(write_pipeline, run_job):
    control = write_pipeline(train_doing("pass"))
    first = run_job("train", control)
    with open(os.path.join(first.job.work_dir, "error.json"), "w") as stale:
        stale.write('{"type": "ValueError", "message": "old"}')

    again = execute(Job(kind="train", control_path=control, work_dir=first.job.work_dir))

    assert again.status == "succeeded"


def test_a_missing_interpreter_fails_the_run_instead_of_raising(write_pipeline, run_job, sandbox_kind):
    control = write_pipeline(train_doing("pass"))

    ran = run_job("train", control, python="/nonexistent/bin/python")

    assert ran.outcome.status == "failed"
    if sandbox_kind == "process":
        assert ran.outcome.error.startswith("Could not start the pipeline process:")
    else:  # bwrap itself starts, then cannot find the interpreter
        assert ran.outcome.error == "Pipeline process exited with status 1"
        assert "/nonexistent/bin/python" in ran.log


def test_a_pipeline_venv_sees_its_own_packages_and_the_sdk_overlay_only(write_pipeline, run_job, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    overlay = tmp_path / "overlay"
    for package in (mlopen_runner, mlopenapp):
        source = os.path.dirname(package.__file__)
        shutil.copytree(source, overlay / os.path.basename(source))
    control = write_pipeline(
        train_doing(
            f"""
        from mlopenapp.utils import io_handler
        print(sys.prefix, io_handler.__file__.startswith({str(overlay)!r}), importlib.util.find_spec("psutil"))
        """,
            "import importlib.util, sys",
        )
    )

    ran = run_job("train", control, python=str(venv / "bin" / "python"), extra_pythonpath=[str(overlay)])

    assert ran.log == f"{venv} True None\n"


def test_a_plain_process_pipeline_dies_with_the_process_that_started_it(write_pipeline, tmp_path):
    # What bubblewrap's --die-with-parent gives, for the fallback: a worker killed with SIGKILL
    # must not leave its pipeline running unwatched.
    pid_file = tmp_path / "pipeline.pid"
    control = write_pipeline(
        train_doing(f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)", "import os, time")
    )
    parent_script = textwrap.dedent(f"""
        from mlopen_runner import Job, execute
        execute(Job(kind="train", control_path={control!r}, work_dir={str(tmp_path / "work")!r}, timeout_s=60))
        """)
    # No bwrap on its PATH: the parent runs the pipeline as a plain process.
    env = {"PATH": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen([sys.executable, "-c", parent_script], env=env)
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and parent.poll() is None, "the pipeline never started"
        time.sleep(0.05)
    pipeline = psutil.Process(int(pid_file.read_text()))

    parent.kill()
    parent.wait()

    assert _gone_within(pipeline, 5)


def _gone_within(process: psutil.Process, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False
