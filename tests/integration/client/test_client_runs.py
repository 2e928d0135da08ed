"""`mlopen run ... --wait` end to end: a live server, a real worker, the client in-process and once
as a real `python -m mlopen.cli.main` subprocess with only MLOPEN_URL / MLOPEN_TOKEN set.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

PIPELINES = Path(__file__).resolve().parents[2] / "fixtures" / "pipelines"
ROOT = Path(__file__).resolve().parents[3]
DATA = "name,value\nada,3\ngrace,5\nlinus,9\nalan,1\n"


@pytest.fixture
def data_csv(tmp_path) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(DATA)
    return path


def test_upload_train_run_local_file_wait_and_download(server, module_worker, mlopen, data_csv, tmp_path):
    upload = mlopen("pipeline", "upload", PIPELINES / "client_count.py", "--json")
    assert upload.code == 0, upload.err

    trained = mlopen("run", "client_count", "--train", "--param", "scale=2.5", "--wait")
    assert trained.code == 0, trained.err
    assert "training with scale 2.5" in trained.err  # the run's log, tailed to stderr
    assert "training of client_count v1 succeeded" in trained.out

    result = mlopen("run", str(upload.json["id"]), "--input", data_csv, "--param", "k=5", "--wait", "--json")
    assert result.code == 0, result.err
    run = result.json  # stdout is exactly the final GET /api/v1/runs/<id>/
    assert run["status"] == "succeeded"
    assert run["params"] == {"k": 5, "label": "rows"}
    assert run["input_name"] == "data.csv"
    assert run["trained_model"] is not None
    assert run["result"]["columns"] == ["name", "value"]
    assert run["result"]["data"] == [["grace", 5], ["linus", 9]]
    assert run["result"]["text"] == "<b>2</b> rows with value &ge; 5; model 2.5"
    assert run["metrics"] == {"kept": [{"step": None, "value": 2.0}]}
    assert "counting rows with value >= 5 (int)" in result.err
    assert "kept 2 of 4" in result.err

    target = tmp_path / "out.csv"
    download = mlopen("runs", "download", run["id"], "--format", "csv", "-o", target)
    assert download.code == 0, download.err
    assert list(csv.reader(io.StringIO(target.read_text()))) == [["name", "value"], ["grace", "5"], ["linus", "9"]]
    as_json = tmp_path / "out.json"
    assert mlopen("runs", "download", run["id"], "--format", "json", "-o", as_json).code == 0
    assert json.loads(as_json.read_text()) == {"columns": ["name", "value"], "data": [["grace", 5], ["linus", 9]]}

    shown = mlopen("runs", "show", run["id"])
    assert f"run {run['id']}: run of client_count v1 succeeded" in shown.out
    assert "grace" in shown.out and "2 rows with value ≥ 5" in shown.out
    logs = mlopen("runs", "logs", run["id"])
    assert "kept 2 of 4" in logs.out


def test_failed_run_exits_3_printing_its_error(server, module_worker, mlopen):
    assert mlopen("pipeline", "upload", PIPELINES / "client_fail.py").code == 0
    result = mlopen("run", "client_fail", "--wait")
    assert result.code == 3, (result.err, module_worker.log_text()[-4000:])
    assert result.err.splitlines()[-1].startswith("error: run ")
    assert result.err.splitlines()[-1].endswith(" failed: ValueError: the input has no column called 'price'")
    assert "about to fail" in result.err
    as_json = mlopen("run", "client_fail", "--wait", "--json")
    assert as_json.code == 3
    assert as_json.json["status"] == "failed"
    assert as_json.json["error"] == "ValueError: the input has no column called 'price'"


def test_cancelled_run_exits_4(server, module_worker, mlopen, wait_for_run):
    assert mlopen("pipeline", "upload", PIPELINES / "client_slow.py").code == 0
    queued = mlopen("run", "client_slow", "--json")
    assert queued.code == 0, queued.err
    run_id = queued.json["id"]
    wait_for_run(run_id, timeout=60, until=("running",))
    cancelled = mlopen("runs", "cancel", run_id)
    assert cancelled.code == 0, cancelled.err
    waited = mlopen("runs", "wait", run_id)
    assert waited.code == 4
    assert waited.err.splitlines()[-1] == f"error: run {run_id} cancelled: Cancelled by the user while running."
    follow = mlopen("runs", "logs", run_id, "--follow")
    assert follow.code == 0
    assert "started" in follow.out


def test_real_subprocess_with_environment_only(server, token, module_worker, data_csv, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    env.update(
        MLOPEN_URL=server,
        MLOPEN_TOKEN=token,
        MLOPEN_CONFIG=str(tmp_path / "none.json"),
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    )

    def mlopen(*args, check=True):
        started = time.monotonic()
        completed = subprocess.run(
            [sys.executable, "-m", "mlopen.cli.main", *map(str, args)],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        if check:
            assert completed.returncode == 0, (completed.stdout, completed.stderr)
        assert time.monotonic() - started < 100
        return completed

    pipeline = json.loads(mlopen("pipeline", "upload", PIPELINES / "client_count.py", "--json").stdout)
    done = mlopen("run", pipeline["id"], "--input", data_csv.name, "--param", "k=5", "--wait", "--json")
    run = json.loads(done.stdout)
    assert (run["status"], run["params"]["k"]) == ("succeeded", 5)
    mlopen("runs", "download", run["id"], "--format", "csv", "-o", "out.csv")
    assert (tmp_path / "out.csv").read_text().splitlines() == ["name,value", "grace,5", "linus,9"]
    refused = mlopen("runs", "list", "--token", "wrong", check=False)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.startswith("error: Invalid token.") and refused.stderr.count("\n") == 1


def test_python_client_start_run_with_wait_returns_the_finished_run(server, token, module_worker, data_csv):
    from mlopen.client import Client

    with Client(server, token) as client:
        client.upload_pipeline(PIPELINES / "client_count.py")
        client.wait(client.start_run("client_count", train=True, params={"scale": "2"})["id"], timeout=120)

        run = client.start_run("client_count", input=data_csv, params={"k": 5}, wait=30)

    assert run["status"] == "succeeded", run["error"]
    assert run["result"]["data"] == [["grace", 5], ["linus", 9]]
