"""A warm job through mlopen_runner's WarmPool alone (no Django, no broker, no database), against
calling run_pipeline in this process, measured in the same run.

What a warm run costs the worker and its pipeline process apart from the pipeline's own work: the
job's folder, its input copy, the legacy layout, the request and reply on the pipes, result.json,
and the reading and checking of the result. The pipeline reads a 100-row CSV and returns it as a
table. Reports the p50 of each, their ratio, and the CPU per job of this process and the pipeline
process together (psutil). Writes bench/results/warm-jobs.md.

    python bench/warm_jobs.py                  # 300 jobs, folders under /var/tmp
    python bench/warm_jobs.py --jobs 1000 --folder /srv/mlopen-home
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))  # mlopen_runner, when mlopen is not installed

from mlopen_runner import Job, sandbox  # noqa: E402 - after the path above
from mlopen_runner.inputs import InputFile  # noqa: E402
from mlopen_runner.warm_pool import WarmPool  # noqa: E402

CONTROL = """
def train(inpt, params=None):
    pass


def run_pipeline(input, model, args, params=None):
    lines = input.read().decode().splitlines()
    return {"columns": ["a", "b"], "data": [line.split(",") for line in lines[1:]], "text": f"{len(lines) - 1} rows"}
"""


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def measure(folder: Path, jobs: int) -> dict:
    control = folder / "pipeline" / "control.py"
    control.parent.mkdir(parents=True)
    control.write_text(CONTROL)
    data = folder / "datasets" / "input.csv"
    data.parent.mkdir()
    data.write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(100)))
    (folder / "runs").mkdir()

    namespace: dict = {}
    exec(compile(CONTROL, str(control), "exec"), namespace)  # noqa: S102 - the bench's own pipeline
    direct = []
    for _ in range(jobs):
        started = time.perf_counter()
        with InputFile(str(data), "input.csv") as handle:
            namespace["run_pipeline"](handle, None, None, {})
        direct.append(time.perf_counter() - started)

    pool = WarmPool(folder / "warm", max_processes=1, idle_seconds=3600)

    def job(number: int) -> Job:
        work = folder / "runs" / f"w{number}"
        return Job(
            kind="run",
            control_path=str(control),
            work_dir=str(work),
            input={"path": str(data), "name": "input.csv"},
            timeout_s=30,
        )

    try:
        for number in range(20):  # starts the process and settles its folders
            pool.execute(job(number), key="bench", family="bench")
        processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
        warm = []
        cpu_before = cpu_seconds(processes)
        for number in range(20, 20 + jobs):
            started = time.perf_counter()
            outcome = pool.execute(job(number), key="bench", family="bench")
            warm.append(time.perf_counter() - started)
            if outcome.status != "succeeded":
                raise SystemExit(f"a warm job failed: {outcome.error}")
            shutil.rmtree(folder / "runs" / f"w{number}", ignore_errors=True)
        cpu_per_job = (cpu_seconds(processes) - cpu_before) / jobs
    finally:
        pool.shutdown()
    return {"direct": direct, "warm": warm, "cpu_per_job": cpu_per_job}


def report(result: dict, jobs: int, folder: Path) -> str:
    direct, warm = statistics.median(result["direct"]) * 1000, statistics.median(result["warm"]) * 1000
    p95 = sorted(result["warm"])[int(len(result["warm"]) * 0.95)] * 1000
    lines = [
        "# Warm jobs through WarmPool alone",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, sandbox: {'bubblewrap' if sandbox.active() else 'none'}, "
        f"folders under {folder}. {jobs} jobs one after another; the pipeline reads a 100-row CSV and returns it.",
        "",
        "| path | p50 ms | p95 ms | / direct call | CPU per job ms (this process and the pipeline process) |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| direct call in this process (baseline) | {direct:.3f} | "
        f"{sorted(result['direct'])[int(jobs * 0.95)] * 1000:.3f} | 1.0x | |",
        f"| warm job through WarmPool | {warm:.3f} | {p95:.3f} | {warm / direct:.1f}x | "
        f"{result['cpu_per_job'] * 1000:.2f} |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--folder", type=Path, help="where the job folders go (default: /var/tmp)")
    parser.add_argument("--output", type=Path, default=BENCH / "results" / "warm-jobs.md")
    args = parser.parse_args(argv)
    # Not /tmp, where an install's MLOPEN_HOME is not (see run_bench.default_folder).
    var_tmp = Path("/var/tmp")
    parent = args.folder or (
        var_tmp if var_tmp.is_dir() and os.access(var_tmp, os.W_OK) else Path(tempfile.gettempdir())
    )
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="mlopen-warm-jobs-", dir=parent))
    try:
        text = report(measure(folder, args.jobs), args.jobs, parent)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(text)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
