"""Red team: hostile control files against a real worker and real bubblewrap sandboxes.

Each test is one class of attack a pipeline author tried; each proves the attack now fails and
the worker goes on serving honest runs. The worker serves the whole module, with a small disk
budget so the disk attacks end quickly.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.conf import settings

from mlopen.pipelines.models import TrainedModel
from mlopen_runner import sandbox_status
from mlopen_runner.job import disk_limit_message

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

DISK_MB = 64
WORKER_ENV = {"MLOPEN_RUN_DISK_MB": str(DISK_MB), "MLOPEN_SANDBOX": "bubblewrap"}


@pytest.fixture(autouse=True)
def requires_bubblewrap():
    if sandbox_status()["kind"] != "bubblewrap":
        pytest.skip(f"bubblewrap unavailable: {sandbox_status()['reason']}")


@pytest.fixture
def host_secret():
    """A file of the platform's, outside anything a sandbox is given."""
    path = Path(os.environ["MLOPEN_HOME"]) / f"redteam-secret-{time.monotonic_ns()}.txt"
    path.write_text('{"text": "the platform\'s secret"}')  # what a followed result.json would return
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture
def honest_run_still_works(pipeline_from, submit, wait_for_run, module_worker):
    """After the attack: the same worker still serves an honest pipeline."""

    def check() -> None:
        pipeline_from(
            "honest",
            """
            def train(inpt, params=None):
                pass
            def run_pipeline(input, model, args, params=None):
                return {"text": "fine"}
            """,
        )
        run = wait_for_run(submit("honest")["id"], timeout=60)
        assert (run.status, run.error) == ("succeeded", None), run.log

    return check


# --- 1. The worker follows no link and opens no special file the sandbox planted --------------------


def test_a_model_pkl_linked_to_a_host_file_is_refused_and_nothing_is_stored(
    pipeline_from, submit, wait_for_run, module_worker, host_secret, honest_run_still_works
):
    pipeline_from(
        "model-linker",
        f"""
        import os
        def train(inpt, params=None):
            os.symlink({str(host_secret)!r}, "model.pkl")
        def run_pipeline(input, model, args, params=None):
            return {{"text": "x"}}
        """,
    )

    run = wait_for_run(submit("model-linker", kind="train")["id"], timeout=60)

    assert run.status == "failed"
    assert run.error == (
        "The trained model could not be kept: model.pkl is not a regular file (Too many levels of symbolic links)"
    )
    assert not TrainedModel.objects.exists()
    honest_run_still_works()


@pytest.mark.parametrize("target", ["SECRET", "'/dev/zero'"])
def test_a_result_file_linked_elsewhere_fails_the_run_saying_what_was_wrong(
    pipeline_from, submit, wait_for_run, module_worker, host_secret, target
):
    # The runner writes the pipeline's result through the planted link (inside the sandbox that
    # goes nowhere that matters); the worker, outside, must not follow it to the host's file. The
    # result is over what a warm process sends in its reply instead of a file (32 KB).
    pipeline_from(
        "result-planter",
        f"""
        import os
        SECRET = {str(host_secret)!r}
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            os.symlink({target}, "result.json")
            return {{"text": "planted " + "x" * 40000}}
        """,
    )

    run = wait_for_run(submit("result-planter")["id"], timeout=60)

    assert run.status == "failed"
    assert run.error == "result.json is not a regular file (Too many levels of symbolic links)"
    assert "the platform's secret" not in run.log


def test_a_thread_left_in_a_warm_process_cannot_redirect_the_next_runs_files(
    pipeline_from, submit, wait_for_run, module_worker, upload_dataset, tmp_path
):
    victim = tmp_path / "victim"
    victim.mkdir()
    victim.chmod(0o777)
    # A raw _thread is invisible to threading.enumerate(), so the warm process is kept for the
    # next run; the thread plants links where the worker used to create the next job's folders.
    pipeline_from(
        "racer",
        f"""
        import os, _thread, time
        VICTIM = {str(victim)!r}
        started = []
        def plant():
            here = os.path.dirname(os.getcwd())
            end = time.time() + 15
            while time.time() < end:
                for n in range(1, 8):
                    for name in (f"job{{n}}", f"job{{n}}/input0", "../inputs/job" + str(n)):
                        try:
                            os.symlink(VICTIM, os.path.join(here, name))
                        except OSError:
                            pass
                time.sleep(0.001)
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            if not started:
                started.append(_thread.start_new_thread(plant, ()))
                time.sleep(0.2)
            return {{"text": open(input.path).read().strip()}}
        """,
    )
    dataset = upload_dataset("words.csv", b"hello\n")

    runs = [wait_for_run(submit("racer", input=dataset["id"])["id"], timeout=60) for _ in range(3)]

    assert [(run.status, run.error) for run in runs] == [("succeeded", None)] * 3, [run.log for run in runs]
    assert list(victim.iterdir()) == []


# --- 2. Values cross the boundary as data only ------------------------------------------------------


def test_a_default_shaped_like_a_file_is_refused_at_upload(pipeline_from):
    body = pipeline_from(
        "marker-default",
        f"""
        def get_params(run=False):
            return {{"words": ("string", {{"default": {{"__mlopen_file__": {{"path": {str(settings.MLOPEN_HOME)!r},
                                                                          "name": "home"}}}}}})}}
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            return {{"text": "x"}}
        """,
        expect=400,
    )

    assert body["detail"].startswith("get_params declares a form mlopen cannot offer: parameter 'words': its default")
    assert body["detail"].endswith("is not a valid string: Enter text, not a list or object.")


def test_a_file_parameter_default_never_mounts_a_host_path(
    pipeline_from, submit, wait_for_run, module_worker, host_secret
):
    # The default names a file of the platform's; before, the sandbox bound it and the pipeline read it.
    pipeline_from(
        "marker-file-default",
        f"""
        import os
        def get_params(run=False):
            return {{"data": ("file", {{"default": {{"__mlopen_file__": {{"path": {str(host_secret)!r},
                                                                        "name": "secret"}}}}}})}}
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            return {{"text": f"{{type(params.get('data')).__name__}} {{os.path.exists({str(host_secret)!r})}}"}}
        """,
    )

    run = wait_for_run(submit("marker-file-default")["id"], timeout=60)

    assert _result_text(run) == "NoneType False"


# --- 5. Limits without holes -----------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["one_file_in_tmp", "many_files_in_both"])
def test_a_run_past_its_disk_budget_fails_naming_the_limit_and_leaves_nothing(
    pipeline_from, submit, wait_for_run, module_worker, writer
):
    pipeline_from(
        "filler",
        f"""
        import os, time
        def one_file_in_tmp():
            with open("/tmp/big", "wb") as out:
                for _ in range({DISK_MB * 3}):
                    out.write(os.urandom(1024 * 1024))
        def many_files_in_both():
            for n in range({DISK_MB // 4}):
                for folder in ("/tmp", "."):
                    with open(os.path.join(folder, f"part{{n}}"), "wb") as out:
                        out.write(os.urandom(4 * 1024 * 1024))
            time.sleep(30)
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            {writer}()
            return {{"text": "wrote it all"}}
        """,
    )

    run = wait_for_run(submit("filler")["id"], timeout=90)

    assert run.status == "failed"
    assert run.error.endswith(disk_limit_message(DISK_MB)), run.error
    assert not (Path(settings.MLOPEN_WORK_DIR) / "runs" / str(run.pk)).exists()


def test_tmp_is_on_disk_not_in_memory(pipeline_from, submit, wait_for_run, module_worker):
    pipeline_from(
        "tmp-probe",
        """
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            mounts = [line.split() for line in open("/proc/self/mounts")]
            return {"text": " ".join(kind for _, where, kind, *_ in mounts if where == "/tmp")}
        """,
    )

    run = wait_for_run(submit("tmp-probe")["id"], timeout=60)

    mounted_at_tmp = _result_text(run).split()
    assert mounted_at_tmp, "nothing is mounted at /tmp"
    assert "tmpfs" not in mounted_at_tmp


def test_tracing_new_namespaces_mounts_and_kernel_interfaces_are_denied(
    pipeline_from, submit, wait_for_run, module_worker
):
    pipeline_from(
        "escaper",
        """
        import ctypes, os, subprocess, threading, time
        libc = ctypes.CDLL(None, use_errno=True)
        CALLS = {  # x86-64 numbers
            "ptrace": (101, 16, 1, 0, 0),          # PTRACE_ATTACH to the sandbox's init
            "unshare_user": (272, 0x10000000),     # CLONE_NEWUSER
            "unshare_mount": (272, 0x00020000),    # CLONE_NEWNS
            "mount": (165, 0, 0, 0, 0, 0),
            "keyctl": (250, 0, 0, 0, 0, 0),
            "bpf": (321, 0, 0, 0),
            "perf_event_open": (298, 0, 0, -1, -1, 0),
        }
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            seen = []
            for name, (number, *arguments) in CALLS.items():
                result = libc.syscall(number, *[ctypes.c_long(a) for a in arguments])
                seen.append(f"{name}={result}/{ctypes.get_errno()}")
            seen.append(f"unshare-cmd={subprocess.run(['unshare', '-U', 'true'], capture_output=True).returncode}")
            threads, stop = 0, threading.Event()
            try:
                for _ in range(400):
                    threading.Thread(target=stop.wait, daemon=True).start()
                    threads += 1
            except RuntimeError:
                pass
            stop.set()
            seen.append(f"threads<256={threads < 256}")
            return {"text": " ".join(seen)}
        """,
    )

    run = wait_for_run(submit("escaper")["id"], timeout=60)

    # A worker run as root has a process cap only through a pids cgroup (RLIMIT_NPROC exempts root).
    capped = sandbox_status().get("process_limit") == "pids cgroup" or os.getuid() != 0
    assert _result_text(run) == (
        "ptrace=-1/1 unshare_user=-1/1 unshare_mount=-1/1 mount=-1/1 keyctl=-1/1 bpf=-1/1 "
        f"perf_event_open=-1/1 unshare-cmd=1 threads<256={capped}"
    ), run.error


# --- 6. Warm processes belong to one user -----------------------------------------------------------


def test_module_state_of_a_warm_process_never_carries_one_users_input_into_anothers_run(
    pipeline_from, submit, wait_for_run, module_worker, upload_dataset, api_for, user, author
):
    pipeline_from(
        "collector",
        """
        SEEN = []
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            SEEN.append(open(input.path).read().strip())
            return {"text": "|".join(SEEN)}
        """,
    )
    alice, bob = api_for(author), api_for(user)
    alices = upload_dataset("a.csv", b"alice-private\n", client=alice)
    bobs = upload_dataset("b.csv", b"bob-data\n", client=bob)

    first = wait_for_run(submit("collector", input=alices["id"], client=alice)["id"], timeout=60)
    second = wait_for_run(submit("collector", input=bobs["id"], client=bob)["id"], timeout=60)
    third = wait_for_run(submit("collector", input=alices["id"], client=alice)["id"], timeout=60)

    assert _result_text(first) == "alice-private"
    assert _result_text(second) == "bob-data"
    # Within one user's runs the warm process (and its module state) is kept: documented in SECURITY.md.
    assert _result_text(third) == "alice-private|alice-private"


def _result_text(run) -> str:
    from mlopen.runs import results

    run.refresh_from_db()
    assert run.status == "succeeded", (run.error, run.log[-2000:])
    return results.page_of(results.source_of(run))["text"]
