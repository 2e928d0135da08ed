"""Every client command prints its result through `emit`: with --json exactly the API's JSON on stdout,
otherwise a human form (a line of text, a table, or what a show function prints)."""

from __future__ import annotations

from mlopen.client.exit_codes import EXIT_OK
from mlopen.client.output import ListTable, Output, emit

PAGE = {"count": 2, "next": None, "previous": None, "results": [{"id": 1, "name": "spam"}, {"id": 12, "name": "ham"}]}
PAGE_AS_JSON = """{
  "count": 2,
  "next": null,
  "previous": null,
  "results": [
    {
      "id": 1,
      "name": "spam"
    },
    {
      "id": 12,
      "name": "ham"
    }
  ]
}
"""
PIPELINES = ListTable(["ID", "NAME"], lambda pipeline: [pipeline["id"], pipeline["name"]], empty="No pipelines yet.")


def _emit(capsys, data, *, as_json: bool, **human) -> tuple[str, str]:
    capsys.readouterr()
    assert emit(Output(as_json=as_json), data, **human) == EXIT_OK
    captured = capsys.readouterr()
    return captured.out, captured.err


def _page(count: int, next_url: str | None, previous_url: str | None) -> dict:
    return dict(PAGE, count=count, next=next_url, previous=previous_url)


def test_with_json_a_page_of_a_list_is_printed_as_the_api_json_indented(capsys):
    assert _emit(capsys, PAGE, as_json=True, table=PIPELINES) == (PAGE_AS_JSON, "")


def test_without_json_the_same_page_is_a_table_with_one_row_per_item(capsys):
    assert _emit(capsys, PAGE, as_json=False, table=PIPELINES) == ("ID   NAME\n─────────\n1    spam\n12   ham \n", "")


def test_an_empty_list_without_json_says_the_empty_message_instead_of_a_table(capsys):
    empty = _page(0, None, None) | {"results": []}

    assert _emit(capsys, empty, as_json=False, table=PIPELINES) == ("No pipelines yet.\n", "")


def test_an_empty_list_with_json_is_still_the_api_json(capsys):
    empty = _page(0, None, None) | {"results": []}

    assert _emit(capsys, empty, as_json=True, table=PIPELINES) == (
        '{\n  "count": 0,\n  "next": null,\n  "previous": null,\n  "results": []\n}\n',
        "",
    )


def test_a_page_of_a_longer_list_says_on_stderr_how_to_get_the_next_page(capsys):
    first = _page(40, "http://x/api/v1/pipelines/?page=3", "http://x/api/v1/pipelines/?page=1")

    out, err = _emit(capsys, first, as_json=False, table=PIPELINES, page=2)

    assert out.endswith("12   ham \n")
    assert err == "page 2: 2 of 40; use --page 3 for more\n"


def test_the_last_page_of_a_longer_list_says_where_it_is_without_asking_for_more(capsys):
    last = _page(42, None, "http://x/api/v1/pipelines/?page=20")

    assert _emit(capsys, last, as_json=False, table=PIPELINES, page=21)[1] == "page 21: 2 of 42\n"


def test_without_a_page_number_a_longer_list_is_on_page_1(capsys):
    first = _page(40, "http://x/api/v1/pipelines/?page=2", None)

    assert _emit(capsys, first, as_json=False, table=PIPELINES)[1] == "page 1: 2 of 40; use --page 2 for more\n"


def test_with_json_a_longer_list_has_no_page_note(capsys):
    first = _page(40, "http://x/api/v1/pipelines/?page=2", None)

    assert _emit(capsys, first, as_json=True, table=PIPELINES, page=1)[1] == ""


def test_a_text_result_is_one_line_of_text_or_with_json_the_data(capsys):
    me = {"username": "alice", "role": "author"}

    assert _emit(capsys, me, as_json=False, text="alice (author)") == ("alice (author)\n", "")
    assert _emit(capsys, me, as_json=True, text="alice (author)") == (
        '{\n  "username": "alice",\n  "role": "author"\n}\n',
        "",
    )


def test_rich_markup_in_a_text_result_styles_it_and_is_not_printed(capsys):
    assert _emit(capsys, {}, as_json=False, text="[bold]Deleted[/bold] dataset 3.") == ("Deleted dataset 3.\n", "")


def test_json_keeps_non_ascii_characters_as_they_are(capsys):
    assert _emit(capsys, {"text": "value ≥ 5 — café"}, as_json=True, text="-") == (
        '{\n  "text": "value ≥ 5 — café"\n}\n',
        "",
    )


def test_a_shown_result_is_what_the_show_function_prints_or_with_json_the_data(capsys):
    def show_run(out: Output, run: dict) -> None:
        out.print(f"run {run['id']} {run['status']}")
        out.table(["METRIC", "VALUE"], [["kept", 2]], title="metrics")

    run = {"id": 7, "status": "succeeded"}

    assert _emit(capsys, run, as_json=False, show=show_run) == (
        "run 7 succeeded\nmetrics\nMETRIC   VALUE\n──────────────\nkept     2    \n",
        "",
    )
    assert _emit(capsys, run, as_json=True, show=show_run) == ('{\n  "id": 7,\n  "status": "succeeded"\n}\n', "")


def test_with_no_human_form_only_json_prints_anything(capsys):
    run = {"id": 7, "status": "failed"}

    assert _emit(capsys, run, as_json=False) == ("", "")
    assert _emit(capsys, run, as_json=True) == ('{\n  "id": 7,\n  "status": "failed"\n}\n', "")


def test_a_table_cell_with_brackets_is_shown_as_typed_not_read_as_markup(capsys):
    page = dict(PAGE, count=2, results=[{"id": 1, "name": "ham [x]"}, {"id": 2, "name": "[/x] eggs"}])

    out, _err = _emit(capsys, page, as_json=False, table=PIPELINES)

    assert "ham [x]" in out
    assert "[/x] eggs" in out
