"""A real browser uploads a pipeline with a support folder (the folder picker) and a zip, then reads
its code: the tree, the highlighted source of a file in a subfolder, and the diff between versions.

Screenshots of the code and diff pages land in docs/screenshots/.
"""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from test_browser_flow import browser_page, shot  # noqa: F401 - browser_page is a fixture

from mlopen.pipelines.models import Pipeline

pytestmark = [pytest.mark.browser]

CONTROL = '''"""Scores each text by its words, with a model class from its own subpackage."""
from textnet.model import WordScorer
from textnet import vocabulary


def get_params(run=True):
    return {"threshold": ("float", {"default": 0.5})}


def train(inpt, params=None):
    scorer = WordScorer(vocabulary.load())
    return scorer


def run_pipeline(input, model, args, params=None):
    threshold = (params or {}).get("threshold", 0.5)
    rows = [[line, model.score(line) > threshold] for line in open(input)]
    return {"columns": ["text", "positive"], "data": rows}
'''
MODEL_V1 = '''class WordScorer:
    """Scores a text by the share of its words found in a vocabulary."""

    def __init__(self, words):
        self.words = set(words)

    def score(self, text):
        tokens = text.lower().split()
        return sum(token in self.words for token in tokens) / max(len(tokens), 1)
'''
MODEL_V2 = MODEL_V1.replace(
    "        tokens = text.lower().split()\n",
    "        # Punctuation no longer hides a word.\n"
    '        tokens = [t.strip(".,;:!?") for t in text.lower().split()]\n',
)
VOCABULARY = """from pathlib import Path

HERE = Path(__file__).parent


def load():
    return (HERE / "data" / "positive.txt").read_text().split()
"""


def _folder(root, model: str):
    package = root / "textnet"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text(model)
    (package / "vocabulary.py").write_text(VOCABULARY)
    (package / "data" / "positive.txt").write_text("good\ngreat\nfine\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0junk")
    (package / ".DS_Store").write_bytes(b"\0junk")
    return package


def test_browser_uploads_a_support_folder_and_a_zip_and_reads_the_code(live_server, author, browser_page, tmp_path):  # noqa: F811
    page = browser_page
    base = live_server.url
    control = tmp_path / "wordscore.py"
    control.write_text(CONTROL)
    folder = _folder(tmp_path / "v1", MODEL_V1)
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "ada-password-1")
    page.click("button[type=submit]")

    # Version 1: the control file and the textnet folder, picked as a folder.
    page.goto(f"{base}/pipelines/upload/")
    page.set_input_files("#id_control", str(control))
    page.set_input_files("#id_support_folder", str(folder))
    assert "4 files will be uploaded" in page.inner_text("[data-folder-note]")  # hidden files and caches left out
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r".*/pipelines/\d+/$"))
    pipeline = Pipeline.objects.get(name="wordscore")
    assert sorted(pipeline.latest_version.support_files) == [
        "textnet/__init__.py",
        "textnet/data/positive.txt",
        "textnet/model.py",
        "textnet/vocabulary.py",
    ]

    # Version 2: the same folder as a zip, with a changed model.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in {
            "textnet/__init__.py": "",
            "textnet/model.py": MODEL_V2,
            "textnet/vocabulary.py": VOCABULARY,
            "textnet/data/positive.txt": "good\ngreat\nfine\nnice\n",
        }.items():
            archive.writestr(path, text)
    (tmp_path / "textnet.zip").write_bytes(buffer.getvalue())
    page.goto(f"{base}/pipelines/upload/?name=wordscore")
    page.set_input_files("#id_control", str(control))
    page.set_input_files("#id_support_zip", str(tmp_path / "textnet.zip"))
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r".*/pipelines/\d+/$"))
    assert "wordscore version 2 is uploaded" in page.inner_text(".alert-success")

    # The code of version 2: the tree, and the model's highlighted source.
    page.click("text=textnet/model.py >> nth=0")
    page.wait_for_selector("#source .highlight")
    assert page.inner_text("#source-path") == "textnet/model.py"
    assert "Punctuation no longer hides a word." in page.inner_text("#source")
    tree = page.inner_text("#file-tree")
    assert tree.index("wordscore.py") < tree.index("textnet/") < tree.index("data/") < tree.index("positive.txt")
    shot(page, "pipeline-code.png")

    # What changed from version 1 to 2.
    page.click("#version-switch >> text=Compare")
    page.wait_for_selector(".diff-file")
    assert page.inner_text("#compare-summary").startswith("2 files changed, 3 unchanged")
    assert "+        # Punctuation no longer hides a word." in page.inner_text("pre.diff")
    shot(page, "pipeline-compare.png")
    assert page.csp_violations == []
