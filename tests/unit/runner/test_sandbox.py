"""The sandbox probe picks bubblewrap only when it really works, and falls back cleanly."""

from __future__ import annotations

import ast
import os

import pytest

from mlopen_runner import sandbox


@pytest.fixture
def fake_bwrap(tmp_path, monkeypatch):
    """Put a stand-in `bwrap` script first on PATH and forget the cached probe around the test."""

    def install(script: str) -> None:
        path = tmp_path / "bin" / "bwrap"
        path.parent.mkdir()
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(0o755)
        monkeypatch.setenv("PATH", str(path.parent))

    sandbox._probe.cache_clear()
    yield install
    sandbox._probe.cache_clear()


def test_a_bwrap_that_cannot_create_namespaces_falls_back_to_a_plain_process(fake_bwrap):
    fake_bwrap('echo "bwrap: No permissions to create new namespace" >&2\nexit 1\n')

    assert sandbox.sandbox_status() == {
        "kind": "process",
        "reason": "bwrap is installed but cannot create a sandbox here: bwrap: No permissions to create new namespace",
        "mode": "auto",
    }


def test_a_bwrap_that_refuses_uid_mapping_is_used_without_a_distinct_uid(fake_bwrap):
    fake_bwrap('case "$*" in *--uid*) echo "bwrap: uid mapping refused" >&2; exit 1;; esac\nexit 0\n')

    status = sandbox.sandbox_status()
    status.pop("process_limit")
    assert status == {
        "kind": "bubblewrap",
        "reason": "bwrap works without a distinct uid (--uid is refused here)",
        "mode": "auto",
    }


def test_no_bwrap_on_the_path_means_a_plain_process(fake_bwrap, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))

    assert sandbox.sandbox_status() == {"kind": "process", "reason": "bwrap is not installed", "mode": "auto"}


def test_a_bubblewrapped_pipeline_sees_only_what_it_was_given(write_pipeline, run_job, tmp_path, requires_bubblewrap):
    secret = tmp_path / "not-given.txt"
    secret.write_text("secret")
    control = write_pipeline(f"""
        import os, socket

        def train(inpt, params=None):
            print(os.getuid(), os.path.exists({str(secret)!r}), os.path.exists("/root/.bashrc"))
            try:
                socket.create_connection(("1.1.1.1", 53), timeout=1)
            except OSError:
                print("no network")

        def run_pipeline(input, model, args, params=None):
            return {{}}
        """)

    ran = run_job("train", control)

    uid = 65534 if sandbox._probe().distinct_uid else os.getuid()
    assert ran.log == f"{uid} False False\nno network\n"


def test_a_bubblewrapped_pipeline_gets_only_the_parts_of_etc_python_needs(write_pipeline, run_job, requires_bubblewrap):
    # bwrap started by root maps the sandbox's uid to root outside: a bound /etc/shadow would be readable.
    control = write_pipeline("""
        import getpass, os, ssl

        def train(inpt, params=None):
            print(sorted(os.listdir("/etc")))
            print(os.path.exists("/etc/shadow"), os.path.exists("/etc/ssl/private"))
            print(getpass.getuser(), ssl.create_default_context().cert_store_stats()["x509_ca"] > 0)

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    ran = run_job("train", control)

    listing, secrets, user = ran.log.splitlines()
    assert set(ast.literal_eval(listing)) <= {
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
    }
    assert secrets == "False False"
    name = "nobody" if sandbox._probe().distinct_uid else "root" if os.getuid() == 0 else "pipeline"
    assert user == f"{name} True"


def test_a_bubblewrapped_pipeline_can_write_only_its_work_folder_and_tmp(write_pipeline, run_job, requires_bubblewrap):
    control = write_pipeline("""
        import os

        def train(inpt, params=None):
            for path in ("here.txt", "/tmp/scratch.txt", "/made-up.txt", "/etc/made-up", "/usr/made-up",
                         os.path.join(os.path.dirname(__file__), "beside-the-code.txt")):
                try:
                    open(path, "w").close()
                    print(path, "written")
                except OSError as exc:
                    print(path, type(exc).__name__)

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    ran = run_job("train", control)

    lines = ran.log.splitlines()
    assert lines[:2] == ["here.txt written", "/tmp/scratch.txt written"]
    assert all(line.endswith("OSError") for line in lines[2:]), lines
    assert not os.path.exists(os.path.join(os.path.dirname(control), "beside-the-code.txt"))


def test_network_pipelines_also_get_the_name_resolution_files(write_pipeline, run_job, requires_bubblewrap):
    control = write_pipeline("""
        import os

        def train(inpt, params=None):
            print(sorted(set(os.listdir("/etc")) & {"hosts", "resolv.conf", "nsswitch.conf", "shadow"}))

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    offline, online = run_job("train", control), run_job("train", control, allow_network=True)

    assert offline.log == "[]\n"
    present = sorted(name for name in ("hosts", "resolv.conf", "nsswitch.conf") if os.path.exists(f"/etc/{name}"))
    assert online.log == f"{present}\n"
