"""Objects for the security tests, made directly (no upload, no worker). A plain module: test
modules import it by name (two conftest.py files make `from conftest import` ambiguous)."""

from __future__ import annotations

from pathlib import Path

# What the other personas must never read anywhere: every object alice owns carries this in its name.
SECRET = "alice-secret"
RESULT = {
    "columns": ["name", "score"],
    "data": [["alpha", 1], ["beta", 2]],
    "graphs": [
        {"kind": "figure", "figure": {"data": [{"type": "bar", "x": ["a"], "y": [1]}], "layout": {}}},
        {"kind": "html", "html": "<div id='g'>drawn</div>"},
    ],
    "text": "<b>alice-secret summary</b>",
}
# The run's images, as the runner hands them over once checked.
RESULT_IMAGES = [
    {
        "path": str(Path(__file__).resolve().parents[2] / "fixtures" / "data" / "tiny.png"),
        "name": f"{SECRET}-plot.png",
        "type": "png",
    }
]


def make_run(owner, pipeline, *, status="succeeded", result=None, images=(), **fields):
    from django.utils import timezone

    from mlopen.runs import results
    from mlopen.runs.models import Run

    now = timezone.now()
    fields.setdefault("log", f"{SECRET} log line\n")
    if status != "queued":  # recorded when a run starts
        fields.setdefault(
            "environment", {"runtime": "datascience", "python": "3.11.7", "packages": {"pandas": "2.3.3"}}
        )
    run = Run.objects.create(
        pipeline=pipeline,
        version=pipeline.latest_version,
        kind=fields.pop("kind", "run"),
        owner=owner,
        status=status,
        started_at=None if status == "queued" else now,
        finished_at=now if status in Run.FINISHED else None,
        **fields,
    )
    if result is not None:
        normalized = {"columns": None, "data": None, "graphs": [], "text": None, "warnings": [], **result}
        folder, rows = results.store_result(run.pk, normalized, list(images))
        Run.objects.filter(pk=run.pk).update(result_folder=folder, result_rows=rows)
        run.refresh_from_db()
    return run


def make_pipeline(name: str, created_by=None, private_group=None, params_run=None):
    from mlopen.pipelines.models import Pipeline, PipelineVersion

    pipeline = Pipeline.objects.create(
        name=name, description=f"{name} pipeline", created_by=created_by, private_group=private_group
    )
    from mlopen.core import storage

    version = PipelineVersion.objects.create(
        pipeline=pipeline,
        number=1,
        control_filename=f"{name}.py",
        folder=f"pipelines/{pipeline.pk}/v1",
        params_run=params_run or [],
        params_train=[],
    )
    # Stored, so the routes that read a version's code have a file to show.
    storage.write_stream(f"{version.folder}/{version.control_filename}", [f"# {SECRET} code\n".encode()])
    return pipeline


def dataset_of(owner, name: str, content: bytes = b"name,value\nalpha,1\n"):
    from mlopen.datasets.services import store_dataset

    return store_dataset(owner=owner, name=name, filename=f"{name}.csv", chunks=[content])
