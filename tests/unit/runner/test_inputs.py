"""InputFile behaves like the Django FieldFile legacy pipelines were written against."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from mlopen_runner.inputs import InputFile

CSV = "a,b\n1,2\n3,4\n"


@pytest.fixture
def input_file(tmp_path):
    path = tmp_path / "iris.csv"
    path.write_text(CSV)
    return InputFile(str(path), "datasets/iris.csv")


def test_it_exposes_name_path_and_size(input_file, tmp_path):
    assert input_file.name == "datasets/iris.csv"
    assert input_file.path == str(tmp_path / "iris.csv")
    assert input_file.size == len(CSV)


def test_open_r_then_iterating_yields_text_lines(input_file):
    assert input_file.open("r") is input_file
    assert list(input_file) == ["a,b\n", "1,2\n", "3,4\n"]


def test_readlines_and_read_after_open_r(input_file):
    assert input_file.open("r").readlines() == ["a,b\n", "1,2\n", "3,4\n"]
    assert input_file.open("r").read() == CSV


def test_reading_without_opening_gives_bytes_like_fieldfile(input_file):
    assert input_file.readline() == b"a,b\n"
    assert list(input_file) == [b"1,2\n", b"3,4\n"]


def test_opening_again_starts_from_the_beginning(input_file):
    input_file.open("r").read()

    assert input_file.open("r").readline() == "a,b\n"


def test_pandas_reads_it_before_and_after_open_r(input_file):
    before = pd.read_csv(input_file)
    after = pd.read_csv(input_file.open("r"))

    assert before.to_dict("list") == after.to_dict("list") == {"a": [1, 3], "b": [2, 4]}


def test_chunks_seek_tell_and_close(input_file):
    input_file.read(2)

    assert b"".join(input_file.chunks(chunk_size=4)) == CSV.encode()
    assert input_file.seek(4) == 4 and input_file.tell() == 4
    with input_file as same:
        assert same.read(3) == b"1,2"
    assert input_file.closed


def test_it_is_not_a_path_like(input_file):
    # FieldFile has no __fspath__, and pipelines that test for one must see the same.
    assert not isinstance(input_file, os.PathLike)


def test_str_len_url_and_comparisons_are_fieldfiles(input_file, tmp_path):
    # Pipelines build paths with os.path.join("mlopenapp/data/user_data/", str(input)).
    assert str(input_file) == "datasets/iris.csv"
    assert len(input_file) == len(CSV)
    assert input_file.url == "/user_data/datasets/iris.csv"  # the original's MEDIA_URL
    assert input_file == "datasets/iris.csv"
    assert input_file == InputFile(str(tmp_path / "iris.csv"), "datasets/iris.csv")
    assert hash(input_file) == hash("datasets/iris.csv")


def test_an_empty_file_is_still_true(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")

    assert len(InputFile(str(empty))) == 0
    assert InputFile(str(empty))  # `if input:` asks whether there is a file, as with FieldFile


def test_file_is_the_open_file_underneath_and_multiple_chunks_compares_the_size(input_file):
    assert input_file.file.read() == CSV.encode()  # opened in binary mode on first use
    input_file.open("r")
    assert input_file.file.mode == "r"
    assert input_file.multiple_chunks() is False
    assert input_file.multiple_chunks(chunk_size=4) is True
    assert b"".join(input_file.open("rb").chunks(chunk_size=4)) == CSV.encode()
