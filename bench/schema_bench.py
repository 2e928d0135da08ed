"""How long reading a table's schema takes (mlopen.datasets.schemas), by file size.

A model keeps its training table's schema and every run's input is compared with it, so the read
must stay bounded whatever the file's size: the first MB gives the columns and types, rows are
counted up to COUNT_BYTES and estimated past that, Parquet's footer gives everything.

    python bench/schema_bench.py                 # 10 MB, 100 MB and 1 GB CSVs, a 1M-row Parquet
    python bench/schema_bench.py --sizes 10 50   # other CSV sizes, in MB

Prints a markdown table; the files are written to a temporary folder and removed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("MLOPEN_HOME", tempfile.mkdtemp(prefix="mlopen-schema-bench-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlopen.settings")

import django  # noqa: E402 - the settings' environment comes first

django.setup()

import pandas as pd  # noqa: E402

from mlopen.datasets import schemas  # noqa: E402

ROW = b"12345,0.123456,some text here,true,2024-01-01\n"


def write_csv(path: Path, megabytes: int) -> int:
    block = ROW * (1024 * 1024 // len(ROW))
    with open(path, "wb") as out:
        out.write(b"id,score,label,flag,day\n")
        for _ in range(megabytes):
            out.write(block)
    return path.stat().st_size


def timed(read) -> tuple[float, dict]:
    best, result = float("inf"), None
    for _ in range(3):
        started = time.perf_counter()
        result = read()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", type=int, default=[10, 100, 1024], help="CSV sizes in MB")
    args = parser.parse_args()
    lines = ["| file | size | rows (as read) | estimated | best of 3 |", "| --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as folder:
        for megabytes in args.sizes:
            path = Path(folder) / f"t{megabytes}.csv"
            size = write_csv(path, megabytes)

            def read(path=path, size=size):
                with open(path, "rb") as handle:
                    return schemas.csv_schema(handle, size)

            seconds, schema = timed(read)
            rows, estimated = schema["rows"], schema["rows_estimated"]
            lines.append(f"| CSV | {size / 1e6:.0f} MB | {rows} | {estimated} | {seconds * 1000:.0f} ms |")
            path.unlink()
        parquet = Path(folder) / "t.parquet"
        pd.DataFrame({"id": range(1_000_000), "score": [0.5] * 1_000_000, "label": ["x"] * 1_000_000}).to_parquet(
            parquet
        )

        def read_parquet():
            with open(parquet, "rb") as handle:
                return schemas.parquet_schema(handle)

        seconds, schema = timed(read_parquet)
        size = parquet.stat().st_size
        lines.append(f"| Parquet | {size / 1e6:.1f} MB | {schema['rows']} | False | {seconds * 1000:.1f} ms |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
