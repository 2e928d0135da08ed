"""Trained models are pickles a pipeline wrote: unpickling one runs whatever code it names.

They are read only by the sandboxed child of a run, never by the web process or the worker's
main process. The pipeline below saves an object whose unpickling writes a marker file when it
happens in a process with Django loaded (the web server, the worker) and otherwise becomes a
harmless string the run reports back.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src" / "mlopen"
# Modules and calls that turn bytes into arbitrary objects (and so run code of the bytes' choosing).
UNPICKLING_MODULES = {
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "cloudpickle",
    "joblib",
    "shelve",
    "marshal",
    "jsonpickle",
}
UNPICKLING_CALLS = {"load", "loads", "Unpickler", "read_pickle"}


def _imports_and_calls(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0], None
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                yield node.lineno, node.module.split(".")[0], alias.name
        elif isinstance(node, ast.Attribute) and node.attr == "read_pickle":
            yield node.lineno, "pandas", "read_pickle"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            for keyword in node.keywords:  # numpy.load(..., allow_pickle=True), torch.load(...)
                if keyword.arg == "allow_pickle" and getattr(keyword.value, "value", False):
                    yield node.lineno, "numpy", "load(allow_pickle=True)"


def test_no_module_of_the_web_or_worker_side_can_unpickle():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for line, module, name in _imports_and_calls(path):
            if module in UNPICKLING_MODULES or name in UNPICKLING_CALLS | {"load(allow_pickle=True)"}:
                found.append(f"{path.relative_to(SRC.parent)}:{line}: {module}{'.' + name if name else ''}")
    assert found == []
    text = "\n".join(p.read_text() for p in SRC.rglob("*.py"))
    assert "pickle.load" not in text and "torch.load" not in text


TRAP = '''
"""Saves an object whose unpickling reports where it happened."""
from mlopenapp.utils import io_handler as io

MARKER = {marker!r}
WHERE = (
    "(open(MARKER, 'a').write('unpickled in a Django process') and 'loaded-in-django')"
    " if 'django' in __import__('sys').modules else 'loaded-in-child'"
).replace("MARKER", repr(MARKER))


class Trap:
    def __reduce__(self):
        return (eval, (WHERE, {{}}))


def train(inpt, params=None):
    io.save_pipeline([(Trap(), "trap")], [], "trap")


def run_pipeline(input, model, args, params=None):
    return {{"text": f"the model is {{model}}"}}
'''


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_a_trained_model_is_unpickled_only_inside_the_run_child(
    worker, api, client, admin_user, tmp_path, wait_for_run
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from mlopen.pipelines.models import TrainedModel

    marker = tmp_path / "unpickled-in-django"
    control = SimpleUploadedFile("trap.py", textwrap.dedent(TRAP.format(marker=str(marker))).encode())
    pipeline = api.post("/api/v1/pipelines/", {"control": control}, format="multipart").json()

    def finished(run_id: int) -> str:
        try:
            return wait_for_run(run_id, timeout=90).status
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{worker.log_text()[-4000:]}") from None

    train = api.post("/api/v1/runs/", {"pipeline": pipeline["id"], "kind": "train"}, format="json").json()
    assert finished(train["id"]) == "succeeded"
    model = TrainedModel.objects.get(pipeline_id=pipeline["id"])
    assert model.model_names == ["trap"]  # the child's manifest, read without unpickling

    # Everything the web side shows about the model and its run.
    client.force_login(admin_user)
    for url in (f"/pipelines/{pipeline['id']}/", f"/runs/{train['id']}/", f"/runs/new/?pipeline={pipeline['id']}"):
        assert client.get(url).status_code == 200
    for url in (
        f"/api/v1/pipelines/{pipeline['id']}/",
        f"/api/v1/pipelines/{pipeline['id']}/models/",
        f"/api/v1/runs/{train['id']}/",
    ):
        assert api.get(url).status_code == 200
    assert not marker.exists()

    run = api.post("/api/v1/runs/", {"pipeline": pipeline["id"]}, format="json").json()
    assert finished(run["id"]) == "succeeded"
    assert api.get(f"/api/v1/runs/{run['id']}/").json()["result"]["text"] == "the model is loaded-in-child"
    assert client.get(f"/runs/{run['id']}/").status_code == 200
    assert not marker.exists()
