"""A run's web page and the status panel it polls find their run with a statement compiled once
(mlopen.runs.lookups.visible_run_for_page): it must find what ``Run.objects.visible_to`` finds, for
every kind of user and sharing, and the pages must answer as they did with the ORM's lookup."""

from __future__ import annotations

import re

import pytest
from django.http import Http404

from mlopen.runs import lookups
from mlopen.runs.models import Run
from mlopen.web.views import runs as run_views

PAGE_RELATED = ("pipeline", "version", "owner", "input", "trained_model")


@pytest.fixture
def runs(viewers, make_pipeline, make_run):
    pipeline = make_pipeline(name="shared")
    table = {"columns": ["name", "score"], "data": [["a", 1], ["b", 2]], "text": "two rows"}
    own = make_run(viewers["alice"], pipeline, result=table)
    with_all = make_run(viewers["carol"], pipeline, status="failed", shared_with_all=True, error="ValueError: no")
    with_team = make_run(viewers["carol"], pipeline, status="queued")  # no clock on its page
    with_team.shared_groups.add(viewers["team"])
    private = make_run(viewers["carol"], pipeline, result=table)
    return [own, with_all, with_team, private]


def test_the_page_lookup_finds_what_visible_to_finds_for_every_user_and_sharing(viewers, runs):
    assert runs[0].result_in_database  # a small result, kept as a worker keeps it
    for name in ("admin", "alice", "bob", "carol"):
        user = viewers[name]
        for run in runs:
            expected = Run.objects.visible_to(user).select_related(*PAGE_RELATED).filter(pk=run.pk)
            found = lookups.visible_run_for_page(user, run.pk)
            assert (found is not None) == expected.exists(), (name, run.pk)
            if found is not None:
                [orm] = expected
                assert {k: v for k, v in found.__dict__.items() if k != "_state"} == {
                    k: v for k, v in orm.__dict__.items() if k != "_state"
                }
                assert [getattr(found, r) for r in PAGE_RELATED] == [getattr(orm, r) for r in PAGE_RELATED]
        assert lookups.visible_run_for_page(user, 10**17) is None


def _orm_lookup(request, pk: int) -> Run:
    """What the pages used before: the ORM's lookup, built for each request."""
    from django.shortcuts import get_object_or_404

    return get_object_or_404(Run.objects.visible_to(request.user).select_related(*PAGE_RELATED), pk=pk)


_CSRF = re.compile(rb'(name="csrfmiddlewaretoken" value="|"X-CSRFToken": ")[^"]+')


def _answer(client, url: str) -> tuple[int, bytes]:
    response = client.get(url, headers={"HX-Request": "true"} if url.endswith("/status/") else {})
    return response.status_code, _CSRF.sub(rb"\1-", response.content)


def test_the_run_page_and_its_status_panel_answer_as_with_the_orm_lookup(viewers, runs, client, monkeypatch):
    urls = [f"/runs/{run.pk}/{part}" for run in runs for part in ("", "status/", "table/")]
    urls += ["/runs/999999/", "/runs/999999/status/"]
    for name in ("admin", "bob", "alice"):
        client.force_login(viewers[name])
        compiled = [_answer(client, url) for url in urls]
        with monkeypatch.context() as patch:
            patch.setattr(run_views, "_get_run", _orm_lookup)
            orm_built = [_answer(client, url) for url in urls]
        assert [status for status, _ in compiled] == [status for status, _ in orm_built], name
        assert compiled == orm_built, name
    assert compiled[0][0] == 200 and b"two rows" in compiled[0][1]  # alice's own run, its result


def test_a_run_someone_may_not_see_is_a_404_for_them(viewers, runs, rf):
    request = rf.get("/")
    request.user = viewers["alice"]
    with pytest.raises(Http404):
        run_views._get_run(request, runs[3].pk)  # carol's private run
    assert run_views._get_run(request, runs[1].pk).pk == runs[1].pk  # shared with everyone
