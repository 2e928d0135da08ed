"""Zip-slip, symlink entries and zip bombs are refused; nothing is written outside the folder."""

from __future__ import annotations

import stat
import zipfile

import pytest

from mlopen_runner.archives import UnsafeArchive, extract_zip
from mlopen_runner.inputs import InputFile


def _zip(path, entries):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            if isinstance(name, zipfile.ZipInfo):
                archive.writestr(name, data)
            else:
                archive.writestr(name, data)
    return path


def test_a_plain_zip_extracts_into_its_folder(tmp_path):
    archive = _zip(tmp_path / "ok.zip", [("a.csv", "x,y\n1,2\n"), ("sub/b.txt", "hello")])
    folder = InputFile(str(archive), "ok.zip").extract(str(tmp_path / "out"))
    assert (tmp_path / "out" / "a.csv").read_text() == "x,y\n1,2\n"
    assert (tmp_path / "out" / "sub" / "b.txt").read_text() == "hello"
    assert folder == str(tmp_path / "out")


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt", "..\\evil.txt", "C:/evil.txt"])
def test_entries_escaping_the_folder_are_refused_and_nothing_is_written(tmp_path, name):
    info = zipfile.ZipInfo("placeholder")
    archive = tmp_path / "slip.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("fine.txt", "fine")
        info.filename = name  # ZipInfo normalizes on construction; set the raw name afterwards
        handle.writestr(info, "evil")
    with pytest.raises(UnsafeArchive):
        extract_zip(str(archive), str(tmp_path / "out"))
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out").exists()


def test_symlink_entries_are_refused(tmp_path):
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = _zip(tmp_path / "link.zip", [(link, "/etc/passwd")])
    with pytest.raises(UnsafeArchive, match="link"):
        extract_zip(str(archive), str(tmp_path / "out"))


def test_a_zip_bomb_is_stopped_by_the_bytes_actually_written(tmp_path):
    archive = _zip(tmp_path / "bomb.zip", [("zeros.bin", b"\0" * (5 * 1024 * 1024))])
    assert archive.stat().st_size < 100_000  # the compressed file is tiny
    with pytest.raises(UnsafeArchive, match="more than 1 MB"):
        extract_zip(str(archive), str(tmp_path / "out"), max_bytes=1024 * 1024)
    assert not (tmp_path / "out").exists()


def test_too_many_entries_are_refused(tmp_path):
    archive = _zip(tmp_path / "many.zip", [(f"f{i}.txt", "x") for i in range(20)])
    with pytest.raises(UnsafeArchive, match="20 entries"):
        extract_zip(str(archive), str(tmp_path / "out"), max_entries=10)
