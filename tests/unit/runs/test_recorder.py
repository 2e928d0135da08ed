"""execution.RunRecorder: a database error in the periodic flush never reaches the pipeline."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import OperationalError
from django.utils import timezone

from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen.runs import execution, lifecycle
from mlopen.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def running(db) -> Run:
    owner = get_user_model().objects.create_user("alice", password="x")
    pipeline = Pipeline.objects.create(name="iris", description="iris pipeline")
    version = PipelineVersion.objects.create(
        pipeline=pipeline, number=1, control_filename="iris.py", folder=f"pipelines/{pipeline.pk}/v1"
    )
    return Run.objects.create(
        pipeline=pipeline,
        version=version,
        kind=Run.Kind.RUN,
        owner=owner,
        status=Run.Status.RUNNING,
        worker="w1",
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )


def test_a_flush_that_meets_a_database_error_keeps_the_log_and_metrics_for_the_next_flush(running, monkeypatch, caplog):
    recorder = execution.RunRecorder(running)
    recorder.output("epoch 1\n")
    recorder.event({"type": "metric", "name": "loss", "value": 0.5, "step": 1})
    real_record_progress = lifecycle.record_progress

    def database_down(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(lifecycle, "record_progress", database_down)
    recorder.flush()

    assert (recorder.cancelled, len(recorder.metrics), recorder.dirty) == (False, 1, True)
    assert Run.objects.get(pk=running.pk).log == ""
    assert "trying again at the next flush" in caplog.text

    monkeypatch.setattr(lifecycle, "record_progress", real_record_progress)
    recorder.flush()

    row = Run.objects.get(pk=running.pk)
    assert (row.log, row.metrics.count(), recorder.metrics, recorder.cancelled) == ("epoch 1\n", 1, [], False)
