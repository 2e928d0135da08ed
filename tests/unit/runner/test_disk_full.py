"""A full disk is named as one: "No space left on device on the disk holding <folder>: X MB free".

Wherever the write fails (the pipeline's own, the child's error.json, the runner's job file, the
trained model's copy, a warm run's inputs), the run's error says the disk is full, not "exited with
status 1". The run's own disk budget (MLOPEN_RUN_DISK_MB) keeps its own message.
"""

from __future__ import annotations

import errno
import os
import textwrap
from types import SimpleNamespace

from mlopen_runner import Job, execute, untrusted, warm_pool, watching
from mlopen_runner.job import disk_full_message, disk_limit_message, free_bytes, is_disk_full

DISK_FULL = "No space left on device on the disk holding"


def train_doing(body: str, imports: str = "") -> str:
    """A control file whose train runs `body`."""
    indented = textwrap.indent(textwrap.dedent(body).strip(), "    ")
    no_run = "def run_pipeline(input, model, args, params=None):\n    return {}\n"
    return f"{imports}\ndef train(inpt, params=None):\n{indented}\n\n{no_run}"


def statvfs_with_free(free_bytes_left: int):
    """An os.statvfs stand-in whose every disk has `free_bytes_left` for unprivileged writers."""

    def statvfs(path):
        return SimpleNamespace(f_bavail=free_bytes_left // 4096, f_frsize=4096)

    return statvfs


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_the_disk_full_message_names_the_folder_and_its_free_space(monkeypatch):
    monkeypatch.setattr(os, "statvfs", statvfs_with_free(512 * 1024))

    assert disk_full_message("/srv/mlopen/work/runs/7") == (
        "No space left on device on the disk holding /srv/mlopen/work/runs/7: 0.5 MB free"
    )


def test_free_space_is_measured_on_the_nearest_folder_that_exists(tmp_path, monkeypatch):
    missing = tmp_path / "not" / "made" / "yet"
    asked = []
    real_statvfs = os.statvfs

    def statvfs(path):
        real_statvfs(path)  # a folder that does not exist raises, as the real one does
        asked.append(path)
        # A figure of the folder alone: two real readings of a shared disk differ by whatever other
        # processes wrote between them.
        return SimpleNamespace(f_bavail=len(str(path)), f_frsize=4096)

    monkeypatch.setattr(os, "statvfs", statvfs)

    assert free_bytes(str(missing)) == free_bytes(str(tmp_path)) == len(str(tmp_path)) * 4096
    assert asked == [str(tmp_path), str(tmp_path)]


def test_only_enospc_and_edquot_count_as_a_full_disk():
    assert is_disk_full(OSError(errno.ENOSPC, "full"))
    assert is_disk_full(OSError(errno.EDQUOT, "quota"))
    assert not is_disk_full(OSError(errno.EACCES, "denied"))
    assert not is_disk_full(ValueError("no"))


def test_a_pipeline_that_dies_without_a_word_on_a_full_disk_is_told_the_disk_is_full(
    write_pipeline, run_job, monkeypatch
):
    control = write_pipeline(train_doing("os._exit(1)", "import os"))
    monkeypatch.setattr(os, "statvfs", statvfs_with_free(8192))  # the parent's view only

    ran = run_job("train", control)

    assert ran.outcome.status == "failed"
    assert ran.outcome.error == f"{DISK_FULL} {ran.job.work_dir}: 0 MB free"


def test_a_pipeline_that_dies_without_a_word_with_room_on_the_disk_keeps_its_exit_status(
    write_pipeline, run_job, monkeypatch
):
    control = write_pipeline(train_doing("os._exit(1)", "import os"))
    monkeypatch.setattr(os, "statvfs", statvfs_with_free(10 * 1024 * 1024))

    ran = run_job("train", control)

    assert ran.outcome.error == "Pipeline process exited with status 1"


def test_a_silent_failure_past_the_runs_own_disk_budget_names_the_budget_not_the_disk(
    write_pipeline, run_job, monkeypatch
):
    # Two files under the one-file cap (RLIMIT_FSIZE = the budget), over the budget together.
    control = write_pipeline(
        train_doing(
            """
            for name in ("a", "b"):
                with open(name, "wb") as out:
                    out.write(b"x" * 700 * 1024)
            os._exit(1)
            """,
            "import os",
        )
    )
    monkeypatch.setattr(os, "statvfs", statvfs_with_free(0))

    ran = run_job("train", control, disk_mb=1)

    assert ran.outcome.error == disk_limit_message(1)


def test_a_write_the_pipeline_sees_fail_with_enospc_names_the_full_disk(write_pipeline, run_job):
    control = write_pipeline(train_doing("raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))", "import errno, os"))

    ran = run_job("train", control)

    assert ran.outcome.error.startswith(f"OSError: {DISK_FULL} {ran.job.work_dir}: ")
    assert ran.outcome.error.endswith(" MB free")


def test_the_runner_unable_to_write_the_job_file_fails_the_run_with_the_full_disk_named(
    write_pipeline, run_job, monkeypatch
):
    control = write_pipeline(train_doing("pass"))
    monkeypatch.setattr(untrusted, "create_file", enospc)

    ran = run_job("train", control)

    assert ran.outcome.status == "failed"
    assert ran.outcome.error.startswith(f"{DISK_FULL} {ran.job.work_dir}: ")


def test_a_trained_model_that_cannot_be_copied_out_names_the_full_disk(write_pipeline, run_job, monkeypatch):
    control = write_pipeline(
        train_doing("save_pipeline([(1, 'm')], [], 'model')", "from mlopenapp.utils.io_handler import save_pipeline")
    )
    monkeypatch.setattr(untrusted, "copy_out", enospc)

    ran = run_job("train", control)

    folder = os.path.dirname(watching.private_model_path(ran.job.work_dir))
    assert ran.outcome.status == "failed"
    assert ran.outcome.error.startswith(f"The trained model could not be kept: {DISK_FULL} {folder}: ")
    assert not os.path.exists(watching.private_model_path(ran.job.work_dir))


def test_a_warm_run_whose_inputs_cannot_be_copied_in_fails_with_the_full_disk_named(
    write_pipeline, data_file, tmp_path, monkeypatch
):
    control = write_pipeline("def run_pipeline(input, model, args, params=None):\n    return {'text': 'ok'}\n")
    pool = warm_pool.WarmPool(tmp_path / "warm")
    monkeypatch.setattr(warm_pool.shutil, "copyfile", enospc)
    job = Job(kind="run", control_path=control, work_dir=str(tmp_path / "w"), input=data_file("a\n1\n"), timeout_s=30)
    try:
        outcome = pool.execute(job, key="k")
    finally:
        pool.shutdown()

    assert outcome.status == "failed"
    assert outcome.error.startswith(f"{DISK_FULL} {tmp_path / 'warm'}/p1: ")


def test_a_pipeline_that_fills_a_real_disk_fails_with_no_space_left_on_device_named(write_pipeline, tiny_disk):
    control = write_pipeline(
        train_doing(
            """
            with open("filler", "wb") as out:
                while True:
                    out.write(b"x" * 65536)
                    out.flush()
            """
        )
    )
    job = Job(kind="train", control_path=control, work_dir=str(tiny_disk / "run"), timeout_s=30)

    outcome = execute(job)

    assert outcome.status == "failed"
    # Either the child could still write error.json or it could not and the parent looked: the
    # same plain words, the folder named.
    assert DISK_FULL in outcome.error
    assert str(tiny_disk / "run") in outcome.error


def test_a_pipeline_killed_by_a_signal_on_a_full_disk_is_still_reported_with_the_signal(
    write_pipeline, run_job, monkeypatch
):
    control = write_pipeline(train_doing("os.kill(os.getpid(), 9)", "import os"))
    monkeypatch.setattr(os, "statvfs", statvfs_with_free(0))

    ran = run_job("train", control)

    assert ran.outcome.error == "Pipeline process was killed by signal 9 (SIGKILL)"


def test_a_warm_run_that_fills_a_real_disk_fails_with_no_space_left_on_device_named(
    write_pipeline, data_file, tiny_disk
):
    control = write_pipeline(
        """
        def run_pipeline(input, model, args, params=None):
            with open("filler", "wb") as out:
                while True:
                    out.write(b"x" * 65536)
                    out.flush()
        """
    )
    pool = warm_pool.WarmPool(tiny_disk / "warm")
    job = Job(kind="run", control_path=control, work_dir=str(tiny_disk / "w"), input=data_file("a\n1\n"), timeout_s=30)
    try:
        outcome = pool.execute(job, key="k")
    finally:
        pool.shutdown()

    assert outcome.status == "failed"
    assert DISK_FULL in outcome.error
    assert str(tiny_disk / "warm") in outcome.error
