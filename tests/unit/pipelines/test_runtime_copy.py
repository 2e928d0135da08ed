"""An environment's start as a copy of its runtime's venv (environments._copy_runtime), on made-up
venvs: what is pointed at the copy, what is left as it was, and a venv that is not as uv built it."""

from __future__ import annotations

import os

import pytest

from mlopen.pipelines import environments


def _venv(root, name="runtime"):
    base = root / name
    (base / "bin").mkdir(parents=True)
    (base / "bin" / "python").symlink_to("/usr/bin/python3")
    (base / "bin" / "tool").write_text(f"#!{base}/bin/python3.11\nimport tool\n")
    (base / "bin" / "activate").write_text(f'VIRTUAL_ENV="{base}"\n')
    (base / "bin" / "plain").write_bytes(b"\x7fELF no path here")
    (base / environments.READY_MARKER).write_text("digest")
    (base / ".mlopen-packages.json").write_text("{}")
    return base


def test_the_copy_points_scripts_at_itself_and_leaves_the_runtimes_own_files(tmp_path):
    base = _venv(tmp_path)
    plain_before = (base / "bin" / "plain").stat().st_mtime_ns
    target = tmp_path / "env"

    log = environments._copy_runtime(base, target)

    assert "copy the runtime's environment (runtime)" in log
    assert (target / "bin" / "tool").read_text() == f"#!{target}/bin/python\nimport tool\n"
    assert (target / "bin" / "activate").read_text() == f'VIRTUAL_ENV="{target}"\n'
    assert os.readlink(target / "bin" / "python") == "/usr/bin/python3"
    # A file naming no venv is copied as it was (times too) and not written again.
    assert (target / "bin" / "plain").stat().st_mtime_ns == plain_before
    assert not (target / environments.READY_MARKER).exists()
    assert not (target / ".mlopen-packages.json").exists()
    assert (base / "bin" / "tool").read_text().startswith(f"#!{base}/")  # the runtime is untouched


def test_a_runtime_whose_bin_is_a_link_is_refused_and_nothing_it_points_at_is_written(tmp_path):
    base = _venv(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tool").write_text(f"#!{base}/bin/python\n")
    for child in (base / "bin").iterdir():
        child.unlink()
    (base / "bin").rmdir()
    (base / "bin").symlink_to(elsewhere)

    with pytest.raises(environments.EnvironmentFailed, match="bin/ is a link"):
        environments._copy_runtime(base, tmp_path / "env")

    assert (elsewhere / "tool").read_text() == f"#!{base}/bin/python\n"
