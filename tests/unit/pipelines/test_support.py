"""The paths support files are kept under, and the zips they come in (mlopen.pipelines.support)."""

from __future__ import annotations

import stat
import zipfile

import pytest

from mlopen.pipelines.control import PipelineRejected
from mlopen.pipelines.support import check_distinct, left_out, support_path, unpack_zip


@pytest.mark.parametrize(
    "sent, kept",
    [
        ("model.py", "model.py"),
        ("textnet/model.py", "textnet/model.py"),
        ("nltk_data/corpora/stopwords/english", "nltk_data/corpora/stopwords/english"),
        ("yolo-control/hyp.yaml", "yolo-control/hyp.yaml"),
        ("./textnet//__init__.py", "textnet/__init__.py"),
        ("my data (v2).csv", "my data (v2).csv"),  # kept exactly: code opens it by this name
        ("%2e%2e%2fx.py", "%2e%2e%2fx.py"),  # a literal name, never decoded
    ],
)
def test_a_support_path_is_kept_as_sent(sent, kept):
    assert support_path(sent) == kept


@pytest.mark.parametrize(
    "sent, reason",
    [
        ("../escape.py", "'..' in its path"),
        ("textnet/../../escape.py", "'..' in its path"),
        ("/etc/cron.d/x", "absolute path"),
        ("C:/Windows/x.py", "absolute path"),
        ("a\x00b.py", "NUL byte"),
        ("a\nb.py", "control character"),
        ("..\\..\\escape.py", "backslash"),
        ("textnet\\model.py", "backslash"),
        ("..／..／escape.py", "'..' in its path"),  # fullwidth solidus: "../../" once NFKC-normalized
        ("a＼b.py", "backslash"),  # fullwidth backslash
        (".env", "hidden"),
        ("textnet/.mlopen-complete", "hidden"),
        ("", "no file name"),
        ("/", "absolute path"),
        ("a/" * 40 + "x.py", "too long a path"),
    ],
)
def test_a_bad_support_path_is_refused_naming_the_file(sent, reason):
    with pytest.raises(PipelineRejected) as refused:
        support_path(sent)
    assert reason in refused.value.message
    assert repr(sent)[:60] in refused.value.message
    assert refused.value.field == "support_files"


@pytest.mark.parametrize(
    "paths, message",
    [
        (["a.py", "a.py"], "Two files are named 'a.py'"),
        (["control.py"], "Two files are named 'control.py': the control file and a support file"),
        (["Model.py", "model.py"], "'Model.py' and 'model.py' differ only in upper/lower case"),
        (["Control.py"], "'control.py' and 'Control.py' differ only in upper/lower case"),
        (["textnet", "textnet/model.py"], "'textnet' is both a file and a folder"),
        (["textnet/model.py", "TextNet"], "'textnet' is both a file and a folder"),
        (["control.py/x.py"], "'control.py' is both a file and a folder"),
    ],
)
def test_paths_that_would_be_one_file_are_refused(paths, message):
    with pytest.raises(PipelineRejected) as refused:
        check_distinct("control.py", paths)
    assert message in refused.value.message


def test_the_same_name_in_two_folders_is_fine():
    check_distinct("control.py", ["a/model.py", "b/model.py", "model.py", "a/b/model.py"])


@pytest.mark.parametrize(
    "path, skipped",
    [
        ("proj/.git/config", True),
        (".DS_Store", True),
        ("textnet/__pycache__/model.cpython-311.pyc", True),
        ("__MACOSX/._model.py", True),
        ("textnet/model.py", False),
        ("textnet/__init__.py", False),
    ],
)
def test_a_picked_folder_or_zip_leaves_out_hidden_files_and_caches(path, skipped):
    assert left_out(path) is skipped


def _zip(tmp_path, entries: dict[str, bytes], links: dict[str, str] | None = None):
    path = tmp_path / "support.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def test_a_zip_is_unpacked_with_its_paths_and_without_its_junk(tmp_path):
    archive = _zip(
        tmp_path,
        {
            "textnet/__init__.py": b"",
            "textnet/model.py": b"X = 1\n",
            "nltk_data/corpora/words.txt": b"a\nb\n",
            "__MACOSX/textnet/._model.py": b"junk",
            "textnet/__pycache__/model.cpython-311.pyc": b"junk",
        },
    )
    unpacked = unpack_zip(archive, "support.zip", tmp_path / "out")
    assert {path: file.read_bytes() for path, file in unpacked} == {
        "textnet/__init__.py": b"",
        "textnet/model.py": b"X = 1\n",
        "nltk_data/corpora/words.txt": b"a\nb\n",
    }
    assert all((tmp_path / "out") in file.parents for _, file in unpacked)


@pytest.mark.parametrize(
    "entries, links, message",
    [
        ({"../escape.py": b"x"}, None, "zip entry '../escape.py' points outside the archive folder"),
        ({"/etc/x.py": b"x"}, None, "zip entry '/etc/x.py' is an absolute path"),
        ({}, {"textnet/link.py": "/etc/passwd"}, "zip entry 'textnet/link.py' is a link or special file"),
    ],
)
def test_a_zip_with_an_unsafe_entry_is_refused_naming_it(tmp_path, entries, links, message):
    with pytest.raises(PipelineRejected) as refused:
        unpack_zip(_zip(tmp_path, entries, links), "support.zip", tmp_path / "out")
    assert refused.value.message.startswith("support.zip: ")
    assert message in refused.value.message
    assert refused.value.field == "support_zip"
    assert not (tmp_path / "escape.py").exists()


def test_a_zip_that_expands_past_the_cap_is_refused(tmp_path, monkeypatch):
    from mlopen_runner import archives

    monkeypatch.setattr(archives, "DEFAULT_MAX_BYTES", 1000)
    archive = _zip(tmp_path, {"zeros.bin": b"\0" * 100_000})  # compresses to a few hundred bytes
    with pytest.raises(PipelineRejected, match="support.zip expands to more than"):
        unpack_zip(archive, "support.zip", tmp_path / "out")


def test_a_zip_with_too_many_entries_is_refused(tmp_path, monkeypatch):
    from mlopen_runner import archives

    monkeypatch.setattr(archives, "DEFAULT_MAX_ENTRIES", 3)
    archive = _zip(tmp_path, {f"f{i}.txt": b"x" for i in range(5)})
    with pytest.raises(PipelineRejected, match="support.zip has 5 entries; the limit is 3"):
        unpack_zip(archive, "support.zip", tmp_path / "out")


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "notes.zip"
    path.write_bytes(b"not a zip")
    with pytest.raises(PipelineRejected, match="notes.zip is not a zip file that can be read"):
        unpack_zip(path, "notes.zip", tmp_path / "out")
