"""What `mlopen serve` starts: the web server, its workers, and one scheduler (celery beat) that
sends retention's periodic prune."""

from __future__ import annotations


def test_serve_starts_one_scheduler_with_the_prune_schedule(settings):
    from mlopen.cli.serve import _children

    children = _children("127.0.0.1", 8000, workers=2)
    labels = [child.label for child in children]
    assert labels[:2] == ["web server", "scheduler"] and len(labels) == 4
    scheduler = children[1]
    assert scheduler.argv[1:6] == ["-m", "celery", "--app", "mlopen.celery_app:app", "beat"]
    assert settings.CELERY_BEAT_SCHEDULE_FILENAME in scheduler.argv
    assert settings.CELERY_BEAT_SCHEDULE["mlopen-prune"]["task"] == "mlopen.prune"


def test_the_prune_task_is_registered_under_its_scheduled_name():
    from mlopen.celery_app import app

    assert "mlopen.prune" in app.tasks
