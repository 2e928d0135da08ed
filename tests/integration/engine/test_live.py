"""What a run shows while it is going: its log growing, its progress, its metrics; and what a
training leaves behind, named without the platform ever unpickling it.
"""

from __future__ import annotations

import time

import pytest
from engine_support import poll

from mlopen.pipelines.models import TrainedModel
from mlopen.runs.models import Run

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


def test_the_log_grows_while_the_run_is_going(pipeline_from, submit, api, wait_for_run, module_worker):
    pipeline_from(
        "ticker",
        """
        import time
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            for tick in range(10):
                print(f"tick {tick}", flush=True)
                time.sleep(0.3)
            return {"text": "done"}
        """,
    )
    run = submit("ticker")

    seen_while_running = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = api.get(f"/api/v1/runs/{run['id']}/logs/")
        if response["X-Run-Status"] not in ("queued", "running"):
            break
        if response["X-Run-Status"] == "running" and response.content not in seen_while_running[-1:]:
            seen_while_running.append(response.content)
        time.sleep(0.1)
    finished = wait_for_run(run["id"], timeout=30)

    assert finished.status == "succeeded"
    assert finished.log == "".join(f"tick {tick}\n" for tick in range(10))
    partial = [text.decode() for text in seen_while_running if text and text.decode() != finished.log]
    assert len(partial) >= 3, seen_while_running
    assert all(finished.log.startswith(text) for text in partial)


def test_progress_reported_by_the_pipeline_is_visible_while_it_runs(
    pipeline_from, submit, run_body, wait_for_run, module_worker
):
    pipeline_from(
        "halfway",
        """
        import time
        from mlopenapp.utils import io_handler as io
        def train(inpt, params=None):
            pass
        def run_pipeline(input, model, args, params=None):
            io.progress(0.5, "half")
            time.sleep(2)
            return {"text": "done"}
        """,
    )
    run = submit("halfway")

    body = poll(lambda: (b := run_body(run["id"]))["progress"] and b, timeout=60, message="progress shown")

    assert body["status"] == "running"
    assert body["progress"] == {"fraction": 0.5, "message": "half"}
    assert wait_for_run(run["id"], timeout=30).status == "succeeded"


def test_metrics_logged_per_epoch_are_listed_as_a_series(pipeline_from, submit, run_body, wait_for_run, module_worker):
    pipeline_from(
        "learner",
        """
        from mlopenapp.utils import io_handler as io
        def train(inpt, params=None):
            for epoch in range(1, 4):
                io.log_metric("loss", 1 / epoch, step=epoch)
            io.log_metric("accuracy", 0.9)
        def run_pipeline(input, model, args, params=None):
            return {}
        """,
    )
    run = submit("learner", kind="train")
    wait_for_run(run["id"], timeout=60)

    body = run_body(run["id"])

    assert body["status"] == "succeeded"
    assert body["metrics"] == {
        "accuracy": [{"step": None, "value": 0.9}],
        "loss": [{"step": 1, "value": 1.0}, {"step": 2, "value": 0.5}, {"step": 3, "value": pytest.approx(1 / 3)}],
    }


def test_a_metric_that_went_nan_is_recorded_as_empty_and_said_so(
    pipeline_from, submit, run_body, wait_for_run, module_worker
):
    pipeline_from(
        "diverges",
        """
        from mlopenapp.utils import io_handler as io
        def train(inpt, params=None):
            io.log_metric("loss", 0.5, step=1)
            io.log_metric("loss", float("nan"), step=2)
            io.log_metric("loss", float("inf"), step=3)
        def run_pipeline(input, model, args, params=None):
            return {}
        """,
    )
    run = wait_for_run(submit("diverges", kind="train")["id"], timeout=60)

    body = run_body(run.pk)

    assert body["metrics"] == {
        "loss": [{"step": 1, "value": 0.5}, {"step": 2, "value": None}, {"step": 3, "value": None}]
    }
    assert "metric 'loss' got a value that is not a finite number (NaN or infinity) at step 2" in run.log


def test_metric_points_past_the_cap_are_dropped_with_a_note(
    pipeline_from, submit, wait_for_run, start_worker, unserved_queue
):
    from mlopen.pipelines.models import Pipeline

    pipeline_from(
        "chatty_metrics",
        """
        from mlopenapp.utils import io_handler as io
        def train(inpt, params=None):
            for step in range(200):
                io.log_metric("loss", 1 / (step + 1), step=step)
        def run_pipeline(input, model, args, params=None):
            return {}
        """,
    )
    Pipeline.objects.filter(name="chatty_metrics").update(queue=unserved_queue)
    start_worker(queues=unserved_queue, extra_env={"MLOPEN_MAX_METRIC_POINTS": "50"})

    run = wait_for_run(submit("chatty_metrics", kind="train")["id"], timeout=60)

    assert run.status == "succeeded", run.error
    assert run.metrics.count() == 50
    assert "more than 50 metric points; later ones are not kept" in run.log


def test_nul_characters_a_pipeline_prints_or_raises_are_stored_on_every_database(
    pipeline_from, submit, wait_for_run, module_worker
):
    pipeline_from(
        "nul_bytes",
        """
        import sys
        from mlopenapp.utils import io_handler as io
        def train(inpt, params=None):
            print("before\\x00after", flush=True)
            io.progress(0.5, "half\\x00way")
            io.log_metric("lo\\x00ss", 1.0)
            io.save_pipeline([(1, "m\\x00odel")], [], "la\\x00bel")
        def run_pipeline(input, model, args, params=None):
            print("run\\x00output", flush=True)
            raise ValueError("bad\\x00value")
        """,
    )
    trained = wait_for_run(submit("nul_bytes", kind="train")["id"], timeout=60)
    failed = wait_for_run(submit("nul_bytes")["id"], timeout=60)

    assert trained.status == "succeeded", trained.error
    assert "before\ufffdafter" in trained.log
    assert trained.progress_message == "half\ufffdway"
    assert list(trained.metrics.values_list("name", flat=True)) == ["lo\ufffdss"]
    assert TrainedModel.objects.get(run=trained).label == "la\ufffdbel"
    assert failed.status == "failed"
    assert "bad\ufffdvalue" in failed.error
    assert "run\ufffdoutput" in failed.log


def test_a_trained_model_is_kept_with_the_names_it_was_saved_under(pipeline_from, submit, wait_for_run, module_worker):
    pipeline_from(
        "namer",
        """
        from mlopenapp.utils import io_handler as io
        class Model:
            pass
        def train(inpt, params=None):
            io.save_pipeline([(Model(), "knn"), (Model(), "scaler")], [({"k": 3}, "settings")], "iris model")
        def run_pipeline(input, model, args, params=None):
            return {"text": f"{type(model).__name__} {args}"}
        """,
    )
    trained = wait_for_run(submit("namer", kind="train")["id"], timeout=60)
    ran = wait_for_run(submit("namer")["id"], timeout=60)

    model = TrainedModel.objects.get(run_id=trained.pk)
    assert (model.label, model.model_names, model.arg_names) == ("iris model", ["knn", "scaler"], ["settings"])
    assert ran.status == "succeeded", ran.error
    assert Run.objects.get(pk=ran.pk).trained_model_id == model.pk
