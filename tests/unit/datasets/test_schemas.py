"""Table schemas read in bounded time, and how two schemas differ."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from mlopen.datasets import schemas


def test_a_csv_schema_has_its_columns_types_and_exact_row_count():
    data = b"id,score,name,ok\n1,0.5,a,true\n2,1.5,b,false\n3,,c,true"  # no final line break

    schema = schemas.csv_schema(io.BytesIO(data), len(data))

    assert schema == {
        "columns": [
            {"name": "id", "type": "integer"},
            {"name": "score", "type": "float"},
            {"name": "name", "type": "string"},
            {"name": "ok", "type": "bool"},
        ],
        "rows": 3,
        "rows_estimated": False,
    }


def test_a_semicolon_csv_is_read_with_its_delimiter():
    data = b"a;b\n1;x\n"
    assert [c["name"] for c in schemas.csv_schema(io.BytesIO(data), len(data))["columns"]] == ["a", "b"]


def test_past_count_bytes_the_rows_are_estimated_from_the_part_read(monkeypatch):
    monkeypatch.setattr(schemas, "COUNT_BYTES", 1000)
    monkeypatch.setattr(schemas, "SAMPLE_BYTES", 500)
    data = b"a,b\n" + b"1,2\n" * 5000  # 20004 bytes, 5000 rows
    handle = io.BytesIO(data)

    schema = schemas.csv_schema(handle, len(data))

    assert schema["rows_estimated"] is True
    assert 4900 <= schema["rows"] <= 5100
    assert handle.tell() == 1000  # it stopped reading there


def test_a_parquet_schema_comes_from_its_footer():
    buffer = io.BytesIO()
    pd.DataFrame({"x": [1, 2], "when": pd.to_datetime(["2024-01-01", "2024-01-02"]), "s": ["a", "b"]}).to_parquet(
        buffer
    )
    buffer.seek(0)

    assert schemas.parquet_schema(buffer) == {
        "columns": [
            {"name": "x", "type": "integer"},
            {"name": "when", "type": "datetime"},
            {"name": "s", "type": "string"},
        ],
        "rows": 2,
        "rows_estimated": False,
    }


TRAINED = {"columns": [{"name": "a", "type": "integer"}, {"name": "b", "type": "string"}]}


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        ([{"name": "a", "type": "integer"}, {"name": "b", "type": "string"}], []),
        ([{"name": "a", "type": "float"}, {"name": "b", "type": "string"}], []),  # a gap makes integers floats
        ([{"name": "a", "type": "integer"}], [("missing_column", "b")]),
        ([{"name": "a", "type": "string"}, {"name": "b", "type": "string"}], [("type_changed", "a")]),
        (
            [{"name": "b", "type": "string"}, {"name": "c", "type": "bool"}],
            [("missing_column", "a"), ("extra_column", "c")],
        ),
    ],
)
def test_compare_names_missing_extra_and_changed_columns(current, expected):
    warnings = schemas.compare(TRAINED, {"columns": current}, "'in.csv'")
    assert [(w["kind"], w["column"]) for w in warnings] == expected
    assert all("'in.csv'" in w["message"] for w in warnings)


def test_nothing_to_compare_without_both_schemas():
    assert schemas.compare(None, TRAINED) == [] and schemas.compare(TRAINED, None) == []
