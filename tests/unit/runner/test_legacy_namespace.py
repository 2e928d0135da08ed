"""Inside a run, the original mlopen's namespace and working folder: real child processes, cold and
warm, under each sandbox this machine offers (mlopen_runner.legacy)."""

from __future__ import annotations

import os
import pickle
import sys
import textwrap
import types
from pathlib import Path

import pytest

from mlopen_runner import Job
from mlopen_runner.warm_pool import WarmPool

SUPPORT = {
    "helpers.py": 'WORD = "helped"\n',
    "mymodel.py": """
        class MyModel:
            def __init__(self, factor):
                self.factor = factor

            def predict(self, value):
                return value * self.factor
        """,
    # A subpackage without __init__.py, as the original's input/ was, importing its parent relatively.
    "Sub/mod.py": """
        from .. import helpers

        X = "sub " + helpers.WORD
        """,
}

IMPORTS = """
    import os
    from mlopenapp.pipelines import helpers as tpp
    from mlopenapp.pipelines.Sub.mod import X
    import mlopenapp.pipelines.mymodel
    from mlopenapp.pipelines.mymodel import MyModel
    from mlopenapp.utils import io_handler as io


    def train(inpt, params=None):
        io.save_pipeline([("not the last", "first"), (MyModel(3), "mymodel")], [], os.path.basename(__file__))


    def run_pipeline(input, model, args, params=None):
        return {"data": [
            [tpp.WORD, X, mlopenapp.pipelines.mymodel.MyModel is MyModel],
            [type(model).__module__, type(model).__name__, model.predict(7)],
        ]}
    """


@pytest.fixture
def write_legacy(tmp_path):
    """A pipeline version's folder: the control file and support files, sub folders included."""

    def write(source: str, files: dict[str, str] | None = None, name: str = "control.py") -> str:
        folder = tmp_path / "version"
        folder.mkdir(exist_ok=True)
        for relative, text in (files or {}).items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(textwrap.dedent(text))
        (folder / name).write_text(textwrap.dedent(source))
        return str(folder / name)

    return write


@pytest.fixture
def pool(tmp_path):
    warm = WarmPool(tmp_path / "warm", max_processes=1, idle_seconds=60)
    yield warm
    warm.shutdown()


@pytest.fixture
def run_cold_and_warm(run_job, pool, tmp_path):
    """Run a job cold, then twice in one warm process; returns the three outcomes."""
    counter = iter(range(1000))

    def run(control: str, **fields):
        fields.setdefault("timeout_s", 30)
        cold = run_job("run", control, **fields).outcome
        warm = [
            pool.execute(
                Job(kind="run", control_path=control, work_dir=str(tmp_path / f"w{next(counter)}"), **fields), key="k"
            )
            for _ in range(2)
        ]
        return [cold, *warm]

    return run


def test_every_import_form_of_the_original_resolves_and_a_support_class_unpickles_cold_and_warm(
    write_legacy, run_job, run_cold_and_warm, sandbox_kind
):
    control = write_legacy(IMPORTS, SUPPORT)

    trained = run_job("train", control)
    outcomes = run_cold_and_warm(control, model_path=trained.outcome.model_path)

    assert trained.outcome.status == "succeeded", trained.log
    for outcome in outcomes:
        assert outcome.status == "succeeded", outcome.error
        assert outcome.result["data"] == [
            ["helped", "sub helped", True],
            ["mlopenapp.pipelines.mymodel", "MyModel", 21],  # the last saved model, from a support module
        ]


def test_a_class_defined_in_the_control_file_pickles_under_mlopenapp_pipelines_and_loads_cold_and_warm(
    write_legacy, run_job, run_cold_and_warm
):
    control = write_legacy(
        """
        from mlopenapp.utils import io_handler as io

        class Local:
            answer = 42

        def train(inpt, params=None):
            io.save_pipeline([(Local(), "local")], [], "knn_control.py")

        def run_pipeline(input, model, args, params=None):
            return {"text": f"{type(model).__module__}.{type(model).__name__} {model.answer} {__name__}"}
        """,
        name="knn_control.py",
    )

    trained = run_job("train", control)
    outcomes = run_cold_and_warm(control, model_path=trained.outcome.model_path)

    expected = "mlopenapp.pipelines.knn_control.Local 42 mlopenapp.pipelines.knn_control"
    assert [outcome.result["text"] for outcome in outcomes] == [expected] * 3


def test_a_model_pickled_before_the_namespace_under_the_bare_file_stem_still_loads(write_legacy, run_job, tmp_path):
    control = write_legacy("""
        class Old:
            pass

        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            return {"text": f"{type(model).__name__} {sorted(args)}"}
        """)
    # What a train wrote before models were pickled object by object, from a class of module "control".
    module = types.ModuleType("control")
    exec("class Old:\n    pass\n", module.__dict__)
    sys.modules["control"] = module
    try:
        payload = pickle.dumps({"models": [("old", module.Old())], "args": [("k", 3)], "label": "control.py"})
    finally:
        del sys.modules["control"]
    old_model = tmp_path / "old.pkl"
    old_model.write_bytes(payload)

    ran = run_job("run", control, model_path=str(old_model))

    assert ran.outcome.status == "succeeded", ran.log
    assert ran.outcome.result["text"] == "Old ['k']"


LAYOUT = """
    import os
    from mlopenapp.utils import io_handler as io

    def train(inpt, params=None):
        pass

    def run_pipeline(input, model, args, params=None):
        with open(os.path.join("mlopenapp/data/user_data/", str(input))) as data:
            first = data.readline().strip()
        with open(os.path.join("mlopenapp/data/user_data/", str(params["extra"]))) as extra:
            second = extra.readline().strip()
        with open("mlopenapp/static/images/plot.png", "wb") as image:
            image.write(b"png")
        try:
            with open("mlopenapp/pipelines/planted.py", "w"):
                pass
            code = "writable"
        except OSError:
            code = "read-only"
        return {"data": [
            [first, second, code],
            sorted(os.listdir("mlopenapp/pipelines")),
            [open("mlopenapp/pipelines/control/hyp.yaml").read().strip(), str(io.get_pipeline_list())],
        ]}
    """


def test_the_working_folder_has_the_originals_layout_cold_and_warm(
    write_legacy, run_cold_and_warm, data_file, requires_bubblewrap
):
    control = write_legacy(LAYOUT, {"control/hyp.yaml": "lr: 0.1\n"})
    data = data_file("a,b\n", name="iris.csv")
    extra = data_file("the\n", name="words.txt")

    outcomes = run_cold_and_warm(control, input=data, files={"extra": extra})

    for outcome in outcomes:
        assert outcome.status == "succeeded", outcome.error
        assert outcome.result["data"] == [
            ["a,b", "the", "read-only"],
            ["control", "control.py"],
            ["lr: 0.1", "['control']"],
        ]
    assert not Path(control).with_name("planted.py").exists()


def test_a_dataset_name_that_would_leave_user_data_gets_no_link_there(write_legacy, run_job, tmp_path):
    control = write_legacy("""
        import os

        def train(inpt, params=None):
            pass

        def run_pipeline(input, model, args, params=None):
            found = []
            for root, folders, files in os.walk("mlopenapp"):
                found += [os.path.join(root, name) for name in files]
            return {"text": ",".join(sorted(found))}
        """)
    path = tmp_path / "x.csv"
    path.write_text("x")

    ran = run_job("run", control, input={"path": str(path), "name": "../../escaped.csv"})

    assert ran.outcome.status == "succeeded", ran.log
    assert ran.outcome.result["text"] == ""
    assert not os.path.lexists(Path(ran.job.work_dir) / "escaped.csv")


IO_SAVE_LOAD = """
    from mlopenapp.utils import io_handler as io

    def train(inpt, params=None):
        vocabulary = ["a"]
        assert io.save(vocabulary, "vocab", type="arg") is True
        vocabulary.append("changed after the save")  # the original pickled at once: not saved
        assert io.load("vocab.pkl", "arg") == ["a"]
        assert io.save(lambda: 1, "unpicklable", type="arg") is False
        io.save({"w": 2}, "weights", True, "model")
        io.save_pipeline([({"w": 1}, "weights")], [(5, "k")], "control.py")
        assert io.load_pipeline("control") == ({"w": 1}, {"k": 5})

    def run_pipeline(input, model, args, params=None):
        mine = io.save("run only", "note", type="arg") and io.load("note", "arg")
        return {"data": [
            [str(io.load("vocab.pkl", "arg")), str(io.load("vocab", "arg")), str(io.load("weights.pkl", "model"))],
            [str(io.load("k", "arg")), str(io.load("missing", "arg")), mine],
            [str(io.load_pipeline(None)), str(model), str(args)],
        ]}
    """


def test_io_save_keeps_each_object_at_once_and_io_load_finds_it_in_the_train_and_later_runs(
    write_legacy, run_job, run_cold_and_warm
):
    control = write_legacy(IO_SAVE_LOAD)

    trained = run_job("train", control)
    outcomes = run_cold_and_warm(control, model_path=trained.outcome.model_path)

    assert trained.outcome.status == "succeeded", trained.log
    assert trained.outcome.model_manifest == {"label": "control.py", "models": ["weights"], "args": ["k", "vocab"]}
    for outcome in outcomes:
        assert outcome.status == "succeeded", outcome.error
        assert outcome.result["data"] == [
            ["['a']", "['a']", "{'w': 2}"],  # save() after save_pipeline: the newer object of that name
            ["5", "False", "run only"],
            ["({'w': 1}, {'k': 5})", "{'w': 1}", "{'k': 5}"],
        ]


def test_what_a_train_saves_is_in_its_folder_at_once_not_only_when_train_returns(write_legacy, run_job):
    control = write_legacy("""
        import os
        from mlopenapp.utils import io_handler as io

        def train(inpt, params=None):
            io.save([1, 2], "early", type="arg")
            print("on disk:", sorted(name for name in os.listdir(".") if name.startswith("model.")))
            raise RuntimeError("training failed after saving")

        def run_pipeline(input, model, args, params=None):
            return {}
        """)

    trained = run_job("train", control)

    assert trained.outcome.status == "failed"
    assert "on disk: ['model.json', 'model.pkl']" in trained.log
