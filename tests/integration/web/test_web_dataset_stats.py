"""A CSV dataset's row count, column types and per-column statistics: exact for a file read whole,
from the first rows (and said so) for one larger than a page reads."""

from __future__ import annotations

import pytest

from mlopen.datasets import stats
from mlopen.datasets.services import store_dataset

pytestmark = pytest.mark.django_db

CSV = b"name,score,count,passed\nada,0.5,3,true\nbob,,5,false\ncy,1.5,,true\nada,2.5,7,true\n"


def stored(owner, content=CSV, name="scores.csv"):
    return store_dataset(owner=owner, name=name, filename=name, chunks=[content])


def _by_name(result):
    return {column["name"]: column for column in result["columns"]}


def test_stats_of_a_small_csv_are_exact(user):
    result = stats.column_stats(stored(user))
    assert (result["rows"], result["rows_exact"], result["complete"], result["sampled_rows"]) == (4, True, True, 4)
    columns = _by_name(result)
    assert list(columns) == ["name", "score", "count", "passed"]
    assert columns["name"] == {
        "name": "name", "type": "text", "missing": 0, "distinct": 3, "min": "ada", "max": "cy", "mean": None,
    }  # fmt: skip
    assert columns["score"] == {
        "name": "score", "type": "number", "missing": 1, "distinct": 3, "min": 0.5, "max": 2.5, "mean": 1.5,
    }  # fmt: skip
    # Whole numbers with a gap are still integers to the reader.
    assert columns["count"] | {"mean": round(columns["count"]["mean"], 6)} == {
        "name": "count", "type": "integer", "missing": 1, "distinct": 3, "min": 3, "max": 7, "mean": 5.0,
    }  # fmt: skip
    assert columns["passed"] == {
        "name": "passed", "type": "boolean", "missing": 0, "distinct": 2, "min": None, "max": None, "mean": 0.75,
    }  # fmt: skip


def test_a_semicolon_csv_is_split_like_its_preview(user):
    result = stats.column_stats(stored(user, b"a;b\n1;x\n2;y\n", name="semi.csv"))
    assert [c["name"] for c in result["columns"]] == ["a", "b"] and result["rows"] == 2


def test_a_file_larger_than_the_byte_budget_is_sampled_and_its_row_count_estimated(user):
    body = b"n,v\n" + b"".join(b"%06d,%d\n" % (i, i % 10) for i in range(10_000))  # 10 000 rows of 9 bytes
    result = stats.column_stats(stored(user, body, name="big.csv"), max_bytes=9_000)
    assert result["complete"] is False and result["rows_exact"] is False
    assert result["sampled_rows"] == 999  # only whole lines of the first 9 000 bytes: the header and 999 rows
    assert 9_900 <= result["rows"] <= 10_100
    assert _by_name(result)["n"]["max"] == 998


def test_a_file_with_more_rows_than_the_row_budget_is_sampled(user):
    body = b"n\n" + b"".join(b"%d\n" % i for i in range(1_000))
    result = stats.column_stats(stored(user, body, name="rows.csv"), max_rows=100)
    assert (result["sampled_rows"], result["complete"]) == (100, False)
    assert _by_name(result)["n"]["max"] == 99
    assert 900 <= result["rows"] <= 1_500  # estimated from the bytes the first rows took (short numbers first)


def test_no_stats_for_files_that_are_not_tables_and_a_reason_for_unparsable_ones(user):
    assert stats.column_stats(stored(user, b"just words\n", name="notes.txt")) is None
    broken = stats.column_stats(stored(user, b'a,b\n"1,2\n', name="broken.csv"))
    assert broken["problem"].startswith("The statistics could not be computed")


def test_dataset_page_shows_row_count_columns_and_what_the_statistics_cover(alice_client, user):
    dataset = stored(user)
    page = alice_client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert '<span class="fw-normal small text-body-secondary" id="dataset-shape">4 rows · 4 columns</span>' in page
    assert '<th scope="row" class="ps-3 fw-medium text-break">score</th>' in page
    assert "Computed over all 4 rows." in page


def test_dataset_page_says_when_the_statistics_come_from_the_first_rows(alice_client, user, monkeypatch):
    monkeypatch.setattr(stats, "STATS_BYTES", 40)
    dataset = stored(user, CSV * 3)
    page = alice_client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "about " in page and "Computed over the first row only" in page
