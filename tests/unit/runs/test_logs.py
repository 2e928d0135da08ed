"""runs.logs and the 0010 migration: a run's log lives in append-only chunks, read by offset, and
every log stored in the old Run.log column moves into chunks with every character kept."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen.runs import logs
from mlopen.runs.models import Run, RunLogChunk

pytestmark = pytest.mark.django_db

migration = importlib.import_module("mlopen.runs.migrations.0010_run_log_chunks")


@pytest.fixture
def run(db) -> Run:
    owner = get_user_model().objects.create_user("alice", password="x")
    pipeline = Pipeline.objects.create(name="iris", description="iris pipeline")
    version = PipelineVersion.objects.create(
        pipeline=pipeline, number=1, control_filename="iris.py", folder=f"pipelines/{pipeline.pk}/v1"
    )
    return Run.objects.create(pipeline=pipeline, version=version, kind=Run.Kind.RUN, owner=owner)


def _write(run: Run, *pieces: str) -> None:
    offset = 0
    for seq, text in enumerate(pieces):
        logs.append(logs.Chunk(run.pk, seq, offset, text))
        offset += len(text)


def test_reading_from_an_offset_inside_a_chunk_returns_the_rest_and_the_next_offset(run):
    _write(run, "abc", "défg", "h\n")

    assert logs.read_from(run.pk, 0) == ("abcdéfgh\n", 9)
    assert logs.read_from(run.pk, 4) == ("éfgh\n", 9)
    assert logs.read_from(run.pk, 3) == ("défgh\n", 9)
    assert logs.read_from(run.pk, 9) == ("", 9)
    assert logs.read_from(run.pk, 50) == ("", 50)
    assert logs.size(run.pk) == 9


def test_the_tail_says_how_many_characters_come_before_it(run):
    _write(run, "x" * 10, "y" * 10, "z" * 5)

    assert logs.tail(run.pk, 8) == ("yyy" + "z" * 5, 17)
    assert logs.tail(run.pk, 100) == ("x" * 10 + "y" * 10 + "z" * 5, 0)


def test_an_empty_log_reads_as_empty(run):
    assert logs.read_from(run.pk, 0) == ("", 0)
    assert logs.tail(run.pk, 10) == ("", 0)
    assert run.log == ""


def test_a_note_outside_the_recorder_goes_after_what_the_log_holds(run):
    _write(run, "one\n")
    logs.append(logs.next_chunk(run.pk, "two\n"))

    assert run.log == "one\ntwo\n"
    assert list(RunLogChunk.objects.filter(run=run).values_list("seq", "offset")) == [(0, 0), (1, 4)]


def test_a_stored_run_log_cannot_be_replaced(run):
    with pytest.raises(AttributeError, match="only grows"):
        run.log = "rewritten"


def test_listing_runs_reads_no_log_column():
    assert "log" not in {field.name for field in Run._meta.concrete_fields}


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_every_existing_log_into_chunks_keeping_every_character():
    executor = MigrationExecutor(connection)
    before = [("runs", "0009_run_model_choice")]
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    try:
        owner = old.get_model("auth", "User").objects.create(username="alice")
        pipeline = old.get_model("pipelines", "Pipeline").objects.create(name="iris")
        version = old.get_model("pipelines", "PipelineVersion").objects.create(
            pipeline=pipeline, number=1, control_filename="iris.py", folder="pipelines/1/v1"
        )
        OldRun = old.get_model("runs", "Run")
        big = "".join(f"line {i} é\u2603\n" for i in range(20_000))  # past one chunk of 64 K characters
        texts = {"empty": "", "short": "epoch 1\nno newline at the end", "big": big}
        ids = {
            name: OldRun.objects.create(pipeline=pipeline, version=version, kind="run", owner=owner, log=text).pk
            for name, text in texts.items()
        }

        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)

    for name, text in texts.items():
        assert Run.objects.get(pk=ids[name]).log == text, name
    chunks = list(RunLogChunk.objects.filter(run_id=ids["big"]).values_list("seq", "offset", "text"))
    assert len(chunks) == -(-len(big) // migration.CHUNK_CHARS)
    assert [offset for _, offset, _ in chunks] == [seq * migration.CHUNK_CHARS for seq, _, _ in chunks]
    assert not RunLogChunk.objects.filter(run_id=ids["empty"]).exists()
    assert django_apps.get_model("runs", "Run") is Run
