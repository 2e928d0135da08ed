"""The run detail and log tail find their run with a statement compiled once (mlopen.runs.lookups):
it must find exactly what ``Run.objects.visible_to`` finds, for every kind of user and sharing, and
answer exactly as the ORM-built lookup did."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mlopen.api.views import RunViewSet
from mlopen.runs import labels, lookups, results
from mlopen.runs.models import Run, RunTag


@pytest.fixture
def runs(viewers, make_pipeline, make_run):
    pipeline = make_pipeline(name="shared")
    own = make_run(viewers["alice"], pipeline=pipeline)
    with_all = make_run(viewers["carol"], pipeline=pipeline, status="failed")
    with_all.shared_with_all = True
    with_all.save()
    with_team = make_run(viewers["carol"], pipeline=pipeline, status="queued")
    with_team.shared_groups.add(viewers["team"])
    private = make_run(viewers["carol"], pipeline=pipeline)
    RunTag.objects.create(run=own, name="best")
    in_database = make_run(viewers["alice"], pipeline=pipeline, result=None)
    kept = results.keep(in_database.pk, {"columns": ["a"], "data": [[1], [2]], "text": "kept in the database"})
    kept.in_database.save(force_insert=True)
    Run.objects.filter(pk=in_database.pk).update(**kept.run_fields())
    return [own, with_all, with_team, private, Run.objects.get(pk=in_database.pk)]


def test_the_compiled_lookup_finds_what_visible_to_finds_for_every_user_and_sharing(viewers, runs):
    for name in ("admin", "alice", "bob", "carol"):
        user = viewers[name]
        for run in runs:
            expected = Run.objects.visible_to(user).select_related("pipeline", "version", "owner").filter(pk=run.pk)
            found = lookups.visible_run(user, run.pk)
            assert (found is not None) == expected.exists(), (name, run.pk)
            if found is not None:
                [orm] = expected
                assert found.__dict__.keys() - {"_state"} == orm.__dict__.keys() - {"_state"}
                assert {k: v for k, v in found.__dict__.items() if k != "_state"} == {
                    k: v for k, v in orm.__dict__.items() if k != "_state"
                }
                assert (found.pipeline, found.version, found.owner) == (orm.pipeline, orm.version, orm.owner)
        assert lookups.visible_run(user, 10**9) is None


def test_the_compiled_lookup_brings_a_result_kept_in_the_database_and_reading_it_asks_nothing_more(viewers, runs):
    in_database = runs[-1]
    found = lookups.visible_run(viewers["alice"], in_database.pk)
    with CaptureQueriesContext(connection) as queries:
        source = results.source_of(found)
    assert len(queries) == 0
    assert results.page_of(source)["data"] == [[1], [2]]
    # A run read without it (the ORM's lookup) asks once, for the same content.
    assert results.source_of(Run.objects.get(pk=in_database.pk)) == source
    # A run whose result is in files has none to bring.
    assert lookups.visible_run(viewers["alice"], runs[0].pk).result_in_database is False


def _answer(client, url: str) -> tuple[int, bytes]:
    response = client.get(url)
    return response.status_code, response.content


def test_the_run_detail_and_logs_answer_as_the_orm_built_lookup_did(viewers, runs, api_for, monkeypatch):
    for name in ("admin", "alice", "bob"):
        client = api_for(viewers[name])
        urls = [f"/api/v1/runs/{run.pk}/" for run in runs] + [f"/api/v1/runs/{run.pk}/logs/" for run in runs]
        urls += ["/api/v1/runs/999999/", "/api/v1/runs/abc/", "/api/v1/runs/99999999999999999999/"]
        compiled = [_answer(client, url) for url in urls]
        with monkeypatch.context() as patch:
            patch.setattr(RunViewSet, "COMPILED_LOOKUP_ACTIONS", set())
            orm_built = [_answer(client, url) for url in urls]
        assert compiled == orm_built, name
    # The owner's tag comes through although the compiled lookup prefetches none.
    body = api_for(viewers["alice"]).get(f"/api/v1/runs/{runs[0].pk}/").json()
    assert body["tags"] == ["best"] == labels.tag_names(runs[0])


def test_the_log_tail_reads_the_run_alone_without_its_result_or_related_rows(viewers, runs, api_for):
    """Asked every second or two while a run goes: one statement on the runs table, with no join
    to the result kept in the database, the pipeline, version or owner, for the owner and an admin."""
    in_database = runs[-1]
    for name in ("alice", "admin"):
        statements: list[str] = []

        def record(execute, sql, params, many, context, statements=statements):
            statements.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(record):
            response = api_for(viewers[name]).get(f"/api/v1/runs/{in_database.pk}/logs/")
        assert response.status_code == 200
        assert response["X-Run-Status"] == in_database.status
        lookup = [sql for sql in statements if 'FROM "runs_run"' in sql and "runs_runlogchunk" not in sql]
        assert len(lookup) == 1, statements
        assert "JOIN" not in lookup[0].split(" WHERE ")[0], lookup[0]
        assert not [sql for sql in statements if "runs_runresult" in sql]


def test_the_answer_to_a_submit_reads_neither_tags_nor_the_runtimes_lock(api, make_pipeline):
    # A new run has no tags, and of its runtime only the build status matters while it is queued:
    # the runtime's row also holds its lock text (75 KB for the default runtime).
    from mlopen.pipelines.models import PipelineVersion, Runtime

    pipeline = make_pipeline(name="fresh")
    runtime = Runtime.objects.create(name="tiny", digest="d" * 64, lock="x" * 75_000, build_status="ready")
    PipelineVersion.objects.filter(pipeline=pipeline).update(runtime=runtime)
    statements: list[str] = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        ready = api.post("/api/v1/runs/", {"pipeline": pipeline.pk, "kind": "train"}, format="json")
    Runtime.objects.filter(pk=runtime.pk).update(build_status="building")
    building = api.post("/api/v1/runs/", {"pipeline": pipeline.pk, "kind": "train"}, format="json")

    assert (ready.status_code, building.status_code) == (201, 201)
    assert ready.json()["tags"] == [] and ready.json()["waiting_for"] is None
    assert building.json()["waiting_for"] == {"runtime": "tiny", "status": "building", "progress": None}
    assert any("INSERT" in sql for sql in statements)  # the wrapper saw the request's statements
    assert not [sql for sql in statements if "runs_runtag" in sql]
    assert not [sql for sql in statements if '"lock"' in sql]
