"""The pipeline contract, end to end: control files written for the original mlopen, uploaded and
run through the REST API by a real worker. Each fixture in tests/fixtures/pipelines/contract_*.py
shows one behaviour of the contract (README.md, "Writing a pipeline").

One worker process serves the whole module (``module_worker``), so every test is transactional:
the worker only sees committed rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SAMPLE_CSV = (FIXTURES / "data" / "sample.csv").read_bytes()  # name,score / ada,3 / grace,5 / linus,4
WORDS_TXT = (FIXTURES / "data" / "words.txt").read_bytes()  # the / quick / brown / fox


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Every test creates its admin afresh (tables are emptied between tests); the default hasher
    # would spend half a second on each password.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def submit(api):
    """POST a run; return its body (or the error body when ``expect`` is not 201)."""

    def post(pipeline, *, kind="run", input=None, params=None, expect=201):
        body = {"pipeline": pipeline, "kind": kind, "params": params or {}}
        if input is not None:
            body["input"] = input
        response = api.post("/api/v1/runs/", body, format="json")
        assert response.status_code == expect, response.content
        return response.json()

    return post


@pytest.fixture
def finished(api, wait_for_run):
    """Wait for a run to finish with ``status``; return GET /api/v1/runs/<id>/."""

    def wait(run, status="succeeded"):
        wait_for_run(run["id"], timeout=60)
        body = api.get(f"/api/v1/runs/{run['id']}/").json()
        if body["status"] != status:
            log = api.get(f"/api/v1/runs/{run['id']}/logs/").content.decode()
            pytest.fail(f"run {run['id']} {body['status']} (wanted {status}): {body['error']}\n{log[-3000:]}")
        return body

    return wait


@pytest.fixture
def sample_csv(upload_dataset):
    return upload_dataset("sample.csv", SAMPLE_CSV)["id"]


@pytest.fixture
def words_txt(upload_dataset):
    return upload_dataset("words.txt", WORDS_TXT)["id"]


def _figure(graph):
    assert graph["kind"] == "figure", graph.get("html", "")[:200]
    return graph["figure"]


# --- get_params and the values pipelines receive ---------------------------------------------------


def test_every_parameter_type_arrives_converted_to_its_python_type(
    upload_pipeline, submit, finished, sample_csv, words_txt, module_worker
):
    upload_pipeline("contract_params_types.py")
    # Values as an HTML form sends them: all text.
    run = submit(
        "contract_params_types",
        params={
            "text": "hi there",
            "bare": "plain",
            "count": "12",
            "limit": "7",
            "ratio": "2.5",
            "scale": "1e-3",
            "flag": "false",
            "switch": "on",
            "colour": "green",
            "data": str(sample_csv),
            "attachment": words_txt,
        },
    )

    rows = {name: (kind, value) for name, kind, value in finished(run)["result"]["data"]}

    assert rows == {
        "text": ("str", "'hi there'"),
        "bare": ("str", "'plain'"),
        "count": ("int", "12"),
        "limit": ("int", "7"),
        "ratio": ("float", "2.5"),
        "scale": ("float", "0.001"),
        "flag": ("bool", "False"),
        "switch": ("bool", "True"),
        "colour": ("str", "'green'"),
        "data": (rows["data"][0], "file sample.csv (sample.csv): name,score"),
        "attachment": (rows["attachment"][0], "file words.txt (words.txt): the"),
    }


def test_missing_optional_parameters_take_their_defaults_and_blank_ones_arrive_as_none(
    upload_pipeline, submit, finished, sample_csv, words_txt, module_worker
):
    upload_pipeline("contract_params_types.py")
    run = submit("contract_params_types", params={"data": sample_csv, "attachment": words_txt, "limit": ""})

    body = finished(run)
    rows = {name: (kind, value) for name, kind, value in body["result"]["data"]}

    assert {name: rows[name] for name in rows if name not in ("data", "attachment")} == {
        "text": ("str", "'hello'"),
        "bare": ("str", "''"),
        "count": ("int", "5"),
        "limit": ("NoneType", "None"),
        "ratio": ("float", "0.5"),
        "scale": ("NoneType", "None"),
        "flag": ("bool", "True"),
        "switch": ("bool", "False"),
        "colour": ("str", "'red'"),
    }
    assert body["params"] == {
        "text": "hello",
        "bare": "",
        "count": 5,
        "limit": None,
        "ratio": 0.5,
        "scale": None,
        "flag": True,
        "switch": False,
        "colour": "red",
        "data": sample_csv,
        "attachment": words_txt,
    }


def test_parameter_specs_are_published_with_their_options(upload_pipeline, api):
    pipeline = upload_pipeline("contract_params_types.py")

    params = api.get(f"/api/v1/pipelines/{pipeline['id']}/").json()["params"]

    assert params["train"] == {}
    assert params["run"] == {
        "text": {"type": "string", "default": "hello"},
        "bare": {"type": "string"},
        "count": {"type": "integer", "default": 5},
        "limit": {"type": "integer", "blank": True},
        "ratio": {"type": "float", "default": 0.5},
        "scale": {"type": "float", "blank": True},
        "flag": {"type": "bool", "default": True},
        "switch": {"type": "bool"},
        "colour": {"type": "choice", "choices": ["red", "green", "blue"], "default": "red"},
        "data": {"type": "file"},
        "attachment": {"type": "upload"},
    }
    assert list(params["run"]) == [
        "text",
        "bare",
        "count",
        "limit",
        "ratio",
        "scale",
        "flag",
        "switch",
        "colour",
        "data",
        "attachment",
    ]


def test_values_that_do_not_convert_are_a_400_naming_each_parameter_and_nothing_is_queued(
    upload_pipeline, submit, sample_csv
):
    from mlopen.runs.models import Run

    upload_pipeline("contract_params_types.py")

    body = submit(
        "contract_params_types",
        expect=400,
        params={
            "count": "many",
            "ratio": "lots",
            "flag": "maybe",
            "colour": "purple",
            "attachment": sample_csv,
            "cuont": 3,
        },
    )

    assert body["errors"] == {
        "params.count": "Enter a whole number (got 'many').",
        "params.ratio": "Enter a number (got 'lots').",
        "params.flag": "Enter true or false (got 'maybe').",
        "params.colour": "Choose one of: red, green, blue.",
        "params.cuont": body["errors"]["params.cuont"],
    }
    assert body["errors"]["params.cuont"].startswith("Unknown parameter.")
    unknown_dataset = submit("contract_params_types", expect=400, params={"data": sample_csv, "attachment": 999999})
    assert set(unknown_dataset["errors"]) == {"params.attachment"}
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    "control", ["contract_params_empty_string.py", "contract_params_none.py", "contract_params_absent.py"]
)
def test_get_params_returning_empty_string_or_none_or_missing_means_no_parameters(
    control, upload_pipeline, submit, finished, module_worker
):
    pipeline = upload_pipeline(control)
    assert pipeline["params"] == {"train": {}, "run": {}}

    refused = submit(pipeline["name"], params={"k": 3}, expect=400)
    run = submit(pipeline["name"])

    assert refused["errors"]["params.k"] == "Unknown parameter. This pipeline takes no parameters."
    assert finished(run)["result"]["text"] == "params={}"


def test_a_bare_string_type_like_string_in_parentheses_is_a_text_parameter(
    upload_pipeline, submit, finished, module_worker
):
    pipeline = upload_pipeline("contract_params_bare_string.py")
    given = submit("contract_params_bare_string", params={"greeting": "hi"})
    blank = submit("contract_params_bare_string")

    assert pipeline["params"] == {"train": {"label": {"type": "string"}}, "run": {"greeting": {"type": "string"}}}
    assert finished(given)["result"]["text"] == "greeting='hi'"
    assert finished(blank)["result"]["text"] == "greeting=''"


# --- input -------------------------------------------------------------------------------------------

INPUT_BEHAVIOURS = {
    'input.open("r") then iterate': (
        "contract_input_iterate.py",
        "sample.csv",
        {
            "columns": ["line", "type"],
            "data": [["name,score", "str"], ["ada,3", "str"], ["grace,5", "str"], ["linus,4", "str"]],
        },
    ),
    "readlines()": (
        "contract_input_readlines.py",
        "sample.csv",
        {"data": [["name,score\n"], ["ada,3\n"], ["grace,5\n"], ["linus,4\n"]], "text": "4 lines"},
    ),
    "read() unopened gives bytes, after open('r') text": (
        "contract_input_read.py",
        "sample.csv",
        {"data": [["unopened", "bytes", SAMPLE_CSV.decode()], ["opened r", "str", SAMPLE_CSV.decode()]]},
    ),
    "pandas.read_csv(input)": (
        "contract_input_pandas.py",
        "sample.csv",
        {
            "columns": ["name", "score"],
            "data": [["ada", 3], ["grace", 5], ["linus", 4]],
            "text": "total=12 again=12 shape=(3, 2)",
        },
    ),
    ".name and .path": (
        "contract_input_name_path.py",
        "sample.csv",
        {
            "data": [
                ["name", "sample.csv"],
                ["path is absolute", "True"],
                ["path basename", "sample.csv"],
                ["same content", "True"],
            ]
        },
    ),
    "open() again starts over": (
        "contract_input_reopen.py",
        "words.txt",
        {
            "data": [
                ["first", "the"],
                ["rest", "quick,brown,fox"],
                ["again", "the"],
                ["after close", "the,quick,brown,fox"],
            ]
        },
    ),
}


@pytest.mark.parametrize("behaviour", list(INPUT_BEHAVIOURS))
def test_input_behaves_like_the_original_django_field_file(
    behaviour, upload_pipeline, upload_dataset, submit, finished, module_worker
):
    control, data_file, expected = INPUT_BEHAVIOURS[behaviour]
    pipeline = upload_pipeline(control)
    dataset = upload_dataset(data_file, (FIXTURES / "data" / data_file).read_bytes())

    result = finished(submit(pipeline["name"], input=dataset["id"]))["result"]

    assert {key: result[key] for key in expected} == expected


# --- train and run -------------------------------------------------------------------------------


def test_a_run_before_any_training_gets_model_none_and_empty_args(upload_pipeline, submit, finished, module_worker):
    upload_pipeline("contract_train_saves.py")

    body = finished(submit("contract_train_saves"))

    assert dict(body["result"]["data"]) == {
        "model type": "NoneType",
        "model predicts 21 as": "-",
        "args type": "dict",
        "arg names": "",
        "vocab": "",
        "threshold": "None",
    }
    assert body["trained_model"] is None


def test_train_saves_models_and_args_and_a_later_run_gets_the_last_model_and_args_by_name(
    api, upload_pipeline, submit, finished, words_txt, module_worker
):
    pipeline = upload_pipeline("contract_train_saves.py")
    assert pipeline["params"]["train"] == {"factor": {"type": "integer", "default": 2}}

    train = finished(submit("contract_train_saves", kind="train", input=words_txt, params={"factor": "3"}))
    current = api.get(f"/api/v1/pipelines/{pipeline['id']}/").json()["current_model"]
    run = finished(submit("contract_train_saves"))

    assert "training with factor 3 on 4 words" in api.get(f"/api/v1/runs/{train['id']}/logs/").content.decode()
    assert current["run"] == train["id"]
    assert current["version"] == 1
    assert (current["label"], current["model_names"], current["arg_names"]) == (
        "contract_train_saves.py",
        ["first_model", "multiplier"],
        ["vocab", "threshold"],
    )
    assert run["trained_model"] == current["id"]
    assert dict(run["result"]["data"]) == {
        "model type": "Multiplier",
        "model predicts 21 as": "63",
        "args type": "dict",
        "arg names": "threshold,vocab",
        "vocab": "the,quick,brown,fox",
        "threshold": "0.75",
    }


def test_every_run_gets_its_own_copy_of_the_trained_model_and_args(upload_pipeline, submit, finished, module_worker):
    upload_pipeline("contract_mutates_model.py")
    finished(submit("contract_mutates_model", kind="train"))

    first = finished(submit("contract_mutates_model"))
    second = finished(submit("contract_mutates_model"))

    assert first["result"]["text"] == "calls=1 seen=1 args=['added', 'seen']"
    assert second["result"]["text"] == "calls=1 seen=1 args=['added', 'seen']"


# --- what run_pipeline returns -----------------------------------------------------------------------


def test_every_graph_form_comes_back_as_a_plotly_figure(upload_pipeline, submit, finished, module_worker):
    upload_pipeline("contract_graphs.py")

    graphs = [_figure(g) for g in finished(submit("contract_graphs"))["result"]["graphs"]]

    assert [[trace["type"] for trace in figure["data"]] for figure in graphs] == [
        ["bar"],
        ["scatter"],
        ["scatter"],
        ["pie"],
        ["pie"],
        ["heatmap"],
    ]
    bundled_div, plain_div, scatter_dict, pie_dict, pie_div, figure_object = graphs
    assert bundled_div["data"][0]["y"] == [1, 2]
    assert bundled_div["layout"]["title"]["text"] == "bars"
    assert plain_div["data"][0]["x"] == [0, 1, 2]  # numpy arrays, binary-encoded by plotly, decoded
    assert plain_div["data"][0]["y"] == [1.5, 2.5, 3.5]
    assert scatter_dict["data"][0]["x"] == [1, 2, 3]
    assert scatter_dict["layout"]["title"]["text"] == "scatter"
    assert dict(zip(pie_dict["data"][0]["labels"], pie_dict["data"][0]["values"])) == {"yes": 3, "no": 1}
    assert dict(zip(pie_div["data"][0]["labels"], pie_div["data"][0]["values"])) == {"left": 2, "right": 5}
    assert figure_object["data"][0]["z"] == [[1.0, 2.0], [3.0, 4.0]]


def test_a_single_graph_not_in_a_list_is_shown_too(upload_pipeline, submit, finished, module_worker):
    upload_pipeline("contract_graph_single.py")

    graphs = finished(submit("contract_graph_single"))["result"]["graphs"]

    assert len(graphs) == 1
    assert _figure(graphs[0])["data"][0]["labels"] == ["only"]


def test_a_matplotlib_figure_and_a_file_named_in_imgs_are_images_of_the_result(
    upload_pipeline, submit, finished, api, module_worker
):
    pytest.importorskip("matplotlib")
    upload_pipeline("contract_images.py")

    result = finished(submit("contract_images"))["result"]

    assert [image["name"] for image in result["images"]] == ["graph-1.png", "counts.png"]
    assert result["graphs"] == []
    assert result["warnings"] == []
    for image in result["images"]:
        response = api.get(image["url"])
        assert response["Content-Type"] == "image/png"
        assert b"".join(response.streaming_content).startswith(b"\x89PNG\r\n\x1a\n")


def test_table_cells_that_are_numpy_or_pandas_scalars_come_back_as_plain_values(
    upload_pipeline, submit, finished, module_worker
):
    upload_pipeline("contract_numpy_data.py")

    result = finished(submit("contract_numpy_data"))["result"]

    assert result["columns"] == ["int64", "float32", "float64", "bool_", "str_", "timestamp", "datetime64"]
    assert result["data"] == [
        [7, 0.5, 1.25, True, "seven", "2024-01-02T03:04:05", "2024-05-06"],
        [-1, None, None, False, "plain", None, None],
        [3, 2.0, 1.0, False, "x", None, None],
    ]
    assert result["rows"] == 3
    assert result["text"] == "numpy text"


def test_a_run_that_returns_something_other_than_a_dict_fails_saying_what_it_returned(
    upload_pipeline, submit, finished, module_worker
):
    upload_pipeline("contract_not_a_dict.py")

    body = finished(submit("contract_not_a_dict"), status="failed")

    assert "run_pipeline must return a dict" in body["error"]
    assert "it returned list" in body["error"]
    assert body["result"] is None


# --- versions and support files ------------------------------------------------------------------


def test_reuploading_a_pipeline_adds_version_2_and_an_old_run_still_points_at_version_1(
    api, upload_pipeline, submit, finished, module_worker
):
    source = (FIXTURES / "pipelines" / "contract_version.py").read_text()
    upload_pipeline("contract_version.py")
    old = finished(submit("contract_version"))

    second = upload_pipeline("contract_version.py", source=source.replace('VERSION = "one"', 'VERSION = "two"'))
    new = finished(submit("contract_version"))
    old_again = api.get(f"/api/v1/runs/{old['id']}/").json()

    assert second["version"] == 2
    assert [v["number"] for v in second["versions"]] == [2, 1]
    assert (old_again["version"], old_again["result"]["text"]) == (1, "version one")
    assert (new["version"], new["result"]["text"]) == (2, "version two")


def test_support_files_are_importable_and_readable_beside_the_control_file(
    upload_pipeline, submit, finished, module_worker
):
    support = FIXTURES / "pipelines" / "support"
    pipeline = upload_pipeline(
        "contract_support.py", support=[support / "contract_helpers.py", support / "contract_vocab.txt"]
    )

    result = finished(submit("contract_support"))["result"]

    assert pipeline["versions"][0]["files"] == ["contract_support.py", "contract_helpers.py", "contract_vocab.txt"]
    assert result["text"] == "HELLO!"
    assert result["data"] == [["alpha"], ["beta"], ["gamma"]]


# --- failures ------------------------------------------------------------------------------------


def test_a_pipeline_that_raises_fails_with_its_message_and_the_traceback_in_the_log(
    api, upload_pipeline, submit, finished, module_worker
):
    from mlopen.pipelines.models import TrainedModel

    upload_pipeline("contract_raises.py")
    run = submit("contract_raises")
    train = submit("contract_raises", kind="train")

    run_body = finished(run, status="failed")
    train_body = finished(train, status="failed")
    log = api.get(f"/api/v1/runs/{run['id']}/logs/").content.decode()

    assert run_body["error"] == "ValueError: the answer is not 42 today"
    assert "about to fail" in log
    assert "Traceback (most recent call last)" in log
    assert "in compute_answer" in log
    assert train_body["error"] == "RuntimeError: this pipeline cannot be trained without cheese"
    assert not TrainedModel.objects.exists()


def test_a_pipeline_that_exits_or_is_killed_fails_and_the_same_worker_then_runs_the_next_run(
    upload_pipeline, submit, finished, module_worker
):
    upload_pipeline("contract_exit.py")
    runs = {how: submit("contract_exit", params={"how": how}) for how in ("sys_exit", "os_exit", "sigkill", "ok")}

    sys_exit = finished(runs["sys_exit"], status="failed")
    os_exit = finished(runs["os_exit"], status="failed")
    sigkill = finished(runs["sigkill"], status="failed")
    ok = finished(runs["ok"])

    assert "exit(3)" in sys_exit["error"]
    assert os_exit["error"] == "Pipeline process exited with status 3"
    assert sigkill["error"] == "Pipeline process was killed by signal 9 (SIGKILL)"
    assert ok["result"]["text"] == "still standing"
    assert {body["worker"] for body in (sys_exit, os_exit, sigkill, ok)} == {module_worker.name}
    assert module_worker.process.poll() is None


def test_stdout_and_stderr_both_reach_the_log(api, upload_pipeline, submit, finished, module_worker):
    upload_pipeline("contract_output.py")

    run = finished(submit("contract_output"))
    log = api.get(f"/api/v1/runs/{run['id']}/logs/").content.decode()

    assert "a line on stdout" in log
    assert "a line on stderr" in log
    assert "no newline at the end" in log
