"""What a warm process keeps from one job for the next so the next makes fewer files and folders:
the legacy layout of the job's folder (only when the job left it as it was made) and the copies of
the stored files the job read (only while the stored file is unchanged). The next job must see
exactly what a fresh one would.

Real warm processes for the end-to-end cases, no Django.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlopen_runner import Job, child, legacy
from mlopen_runner.job import Outcome
from mlopen_runner.warm_pool import WarmPool, _WarmRun
from mlopen_runner.watching import OutputError

# --- the layout, by itself ------------------------------------------------------------------------


def _lay_out(folder: Path, code: Path, files: dict[str, Path], spare: Path | None = None) -> Path:
    folder.mkdir()
    legacy.lay_out_work_dir(
        str(folder), str(code), [(name, str(path)) for name, path in files.items()], spare and str(spare)
    )
    return folder


def _listing(folder: Path) -> dict[str, str]:
    """Every entry under folder/mlopenapp: a link's target, or "dir" / "file"."""
    found = {}
    for root, folders, files in os.walk(folder / "mlopenapp"):
        for name in folders + files:
            path = Path(root, name)
            relative = str(path.relative_to(folder))
            found[relative] = os.readlink(path) if path.is_symlink() else "dir" if path.is_dir() else "file"
    return found


@pytest.fixture
def files(tmp_path):
    made = {}
    for name in ("a.csv", "b.csv", "c.csv"):
        made[name] = tmp_path / "stored" / name
        made[name].parent.mkdir(exist_ok=True)
        made[name].write_text(name)
    code = tmp_path / "code"
    code.mkdir()
    return code, made


def test_a_layout_set_aside_is_the_next_jobs_with_only_that_jobs_links(tmp_path, files):
    code, stored = files
    spare = tmp_path / "spare"
    first = _lay_out(tmp_path / "job1", code, {"a.csv": stored["a.csv"], "b.csv": stored["b.csv"]})
    (first / legacy.IMAGES_DIR / "plot.png").write_bytes(b"png")  # an image the job saved
    folder_inode = os.stat(first / "mlopenapp").st_ino

    legacy.set_aside_layout(str(first), str(spare))
    second = _lay_out(tmp_path / "job2", code, {"b.csv": stored["c.csv"], "c.csv": stored["c.csv"]}, spare)

    assert os.stat(second / "mlopenapp").st_ino == folder_inode  # moved, not made again
    assert not spare.exists() and not (first / "mlopenapp").exists()
    fresh = _lay_out(tmp_path / "fresh", code, {"b.csv": stored["c.csv"], "c.csv": stored["c.csv"]})
    assert (
        _listing(second)
        == _listing(fresh)
        == {
            "mlopenapp/pipelines": str(code),
            "mlopenapp/static": "dir",
            "mlopenapp/data": "dir",
            "mlopenapp/static/images": "dir",
            "mlopenapp/data/user_data": "dir",
            "mlopenapp/data/user_data/b.csv": str(stored["c.csv"]),
            "mlopenapp/data/user_data/c.csv": str(stored["c.csv"]),
        }
    )


CHANGES = {
    "a file beside the folders": lambda job: (job / "mlopenapp" / "notes.txt").write_text("x"),
    "a folder in images": lambda job: (job / legacy.IMAGES_DIR / "more").mkdir(),
    "a link in images": lambda job: (job / legacy.IMAGES_DIR / "link.png").symlink_to("/etc/passwd"),
    "a file in user_data": lambda job: (job / legacy.USER_DATA_DIR / "copy.csv").write_text("x"),
    "a folder made read-only": lambda job: (job / "mlopenapp" / "static").chmod(0o555),
    "pipelines replaced by a folder": lambda job: (
        (job / legacy.PIPELINES_DIR).unlink(),
        (job / legacy.PIPELINES_DIR).mkdir(),
    ),
    "the layout removed": lambda job: __import__("shutil").rmtree(job / "mlopenapp"),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_a_layout_the_job_changed_is_not_kept_and_the_next_job_gets_a_fresh_one(tmp_path, files, change):
    code, stored = files
    spare = tmp_path / "spare"
    first = _lay_out(tmp_path / "job1", code, {"a.csv": stored["a.csv"]})
    change(first)

    legacy.set_aside_layout(str(first), str(spare))
    second = _lay_out(tmp_path / "job2", code, {"a.csv": stored["a.csv"]}, spare)

    assert not spare.exists()
    assert _listing(second) == _listing(_lay_out(tmp_path / "fresh", code, {"a.csv": stored["a.csv"]}))


def test_a_spare_layout_that_cannot_be_brought_up_to_date_is_replaced_by_a_fresh_one(tmp_path, files):
    code, stored = files
    spare = tmp_path / "spare"
    first = _lay_out(tmp_path / "job1", code, {"a.csv": stored["a.csv"]})
    legacy.set_aside_layout(str(first), str(spare))
    # Changed after it was set aside: a folder where the pipelines link was cannot be read as a link.
    (spare / "pipelines").unlink()
    (spare / "pipelines").mkdir()
    (spare / "pipelines" / "old.py").write_text("x")

    second = _lay_out(tmp_path / "job2", code, {"b.csv": stored["b.csv"]}, spare)

    assert not spare.exists()
    assert _listing(second) == _listing(_lay_out(tmp_path / "fresh", code, {"b.csv": stored["b.csv"]}))


def test_a_nested_dataset_name_is_laid_out_fresh_every_time(tmp_path, files):
    code, stored = files
    spare = tmp_path / "spare"
    first = _lay_out(tmp_path / "job1", code, {"sub/a.csv": stored["a.csv"]})

    legacy.set_aside_layout(str(first), str(spare))

    assert not spare.exists()  # user_data holds a folder: not as a flat layout of links
    assert os.readlink(first / legacy.USER_DATA_DIR / "sub" / "a.csv") == str(stored["a.csv"])


# --- in a warm process ----------------------------------------------------------------------------

LOOKS_AROUND = """
    import os

    def train(inpt, params=None):
        pass

    def run_pipeline(input, model, args, params=None):
        found = []
        for root, folders, files in os.walk("mlopenapp"):
            found += sorted(os.path.join(root, name) for name in folders + files)
        inputs = os.path.dirname(os.path.dirname(input.path))
        seen = {
            "layout": sorted(found),
            "layout_inode": os.stat("mlopenapp").st_ino,
            "input_path": input.path,
            "input_text": input.read().decode(),
            "input_folders": sorted(name for name in os.listdir(inputs) if name.startswith("input")),
        }
        mode = (params or {}).get("mode")
        if mode == "image":
            with open("mlopenapp/static/images/plot.png", "wb") as image:
                image.write(b"not really a png")
        if mode == "litter":
            with open("mlopenapp/left.txt", "w") as litter:
                litter.write("x")
        return {"text": repr(seen)}
"""


@pytest.fixture
def stored(data_file):
    """A dataset as the worker names it: its plain file name (Dataset.filename)."""

    def make(text: str, name: str = "data.csv") -> dict:
        return dict(data_file(text, name=name), name=name)

    return make


@pytest.fixture
def run_warm(tmp_path):
    pool = WarmPool(tmp_path / "warm", max_processes=1, idle_seconds=60)
    counter = iter(range(1000))

    def run(control: str, data: dict, mode: str = "") -> dict:
        job = Job(
            kind="run",
            control_path=control,
            work_dir=str(tmp_path / f"work{next(counter)}"),
            input=data,
            params={"mode": mode},
            timeout_s=30,
        )
        outcome = pool.execute(job, key="k", family="f")
        assert outcome.status == "succeeded", outcome.error
        return eval(outcome.result["text"])  # noqa: S307 - the test's own pipeline's repr of plain values

    yield run
    pool.shutdown()


LAYOUT = [
    "mlopenapp/data",
    "mlopenapp/data/user_data",
    "mlopenapp/data/user_data/data.csv",
    "mlopenapp/pipelines",
    "mlopenapp/static",
    "mlopenapp/static/images",
]


def test_each_warm_job_sees_a_fresh_layout_whether_or_not_the_last_one_was_kept(write_pipeline, stored, run_warm):
    control = write_pipeline(LOOKS_AROUND)
    data = stored("a\n1\n")

    first = run_warm(control, data, mode="image")
    second = run_warm(control, data, mode="litter")
    third = run_warm(control, data)

    assert first["layout"] == second["layout"] == third["layout"] == LAYOUT
    # The image the first job saved went with its result, and its folders served the second job.
    # The second left a file among them, which the third does not see: it got new folders.
    assert second["layout_inode"] == first["layout_inode"]


def test_a_warm_job_reuses_the_last_jobs_copy_of_an_unchanged_input_and_copies_a_changed_one(
    write_pipeline, stored, run_warm
):
    control = write_pipeline(LOOKS_AROUND)
    data = stored("a\n1\n")

    first = run_warm(control, data)
    second = run_warm(control, data)
    Path(data["path"]).write_text("a\n1\n2\n")  # replaced in place: another size and time
    third = run_warm(control, data)
    fourth = run_warm(control, data)

    assert second["input_path"] == first["input_path"]
    assert third["input_path"] != second["input_path"]
    assert (first["input_text"], third["input_text"], fourth["input_text"]) == ("a\n1\n", "a\n1\n2\n", "a\n1\n2\n")
    assert re.fullmatch(r".*/input\d+/data\.csv", fourth["input_path"])
    # The copy the third job no longer read was removed when it ended: one job's inputs are kept.
    assert len(third["input_folders"]) == 2
    assert fourth["input_folders"] == [Path(fourth["input_path"]).parent.name]


def test_a_warm_job_on_another_dataset_gets_its_own_copy_and_the_old_one_goes(write_pipeline, stored, run_warm):
    control = write_pipeline(LOOKS_AROUND)
    one, two = stored("x\n1\n", name="one.csv"), stored("y\n2\n", name="two.csv")

    first = run_warm(control, one)
    second = run_warm(control, two)
    third = run_warm(control, two)

    assert (first["input_text"], second["input_text"]) == ("x\n1\n", "y\n2\n")
    assert third["input_path"] == second["input_path"]
    assert third["input_folders"] == [Path(second["input_path"]).parent.name]


def test_an_idle_warm_process_drops_its_copy_of_a_dataset_deleted_meanwhile(write_pipeline, stored, run_warm):
    # A deleted dataset leaves the worker within the reaper's second, not when the process next
    # runs or stops (MLOPEN_WARM_IDLE_SECONDS later); the process itself stays warm.
    control = write_pipeline(LOOKS_AROUND)
    one, two = stored("x\n1\n", name="one.csv"), stored("y\n2\n", name="two.csv")
    first = run_warm(control, one)
    copy = Path(first["input_path"])
    assert copy.read_text() == "x\n1\n"

    Path(one["path"]).unlink()
    deadline = time.monotonic() + 10
    while copy.parent.exists():
        assert time.monotonic() < deadline, "the copy of the deleted dataset is still on the worker"
        time.sleep(0.05)
    second = run_warm(control, two)

    assert second["input_text"] == "y\n2\n"
    assert second["layout_inode"] == first["layout_inode"]  # the same warm process served it
    assert second["input_folders"] == [Path(second["input_path"]).parent.name]


# --- a small result comes with the reply --------------------------------------------------------

SIZED = """
    import json, os

    def train(inpt, params=None):
        pass

    def run_pipeline(input, model, args, params=None):
        rows = int(params["rows"])
        if params.get("image"):
            import base64
            png = base64.b64decode(
                "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
            )
            return {"data": [[i, "x" * 20] for i in range(rows)], "imgs": [png]}
        return {"columns": ["i", "text"], "data": [[i, "q\\"" * 10] for i in range(rows)]}
"""


def test_a_written_result_is_inline_only_when_it_fits_a_reply(tmp_path):
    job = Job(kind="run", control_path="/c.py", work_dir=str(tmp_path))

    small = child.write_result(job, {"data": [[1, 2]]}, inline_max_bytes=1024)
    assert small is not None and json.loads(small)["data"] == [[1, 2]]
    assert not (tmp_path / "result.json").exists()

    quoted = child.write_result(job, {"text": '"' * 600}, inline_max_bytes=1024)  # 1.2 KB once quoted
    assert quoted is None and json.loads((tmp_path / "result.json").read_text())["text"] == '"' * 600
    assert child.write_result(job, {"text": "cold"}) is None  # a cold child always writes the file


@pytest.mark.parametrize(
    "params",
    [{"rows": 5}, {"rows": 3000}, {"rows": 5, "image": True}],
    ids=["small, in the reply", "over 32 KB, in a file", "small with an image"],
)
def test_a_warm_result_is_the_cold_one_whether_it_comes_in_the_reply_or_a_file(
    write_pipeline, run_job, tmp_path, params
):
    control = write_pipeline(SIZED)
    pool = WarmPool(tmp_path / "warm", max_processes=1, idle_seconds=60)
    try:
        cold = run_job("run", control, params=params).outcome
        warm = [
            pool.execute(
                Job(kind="run", control_path=control, work_dir=str(tmp_path / f"w{n}"), params=params, timeout_s=30),
                key="k",
            )
            for n in range(2)
        ]
    finally:
        pool.shutdown()

    for outcome in warm:
        assert outcome.status == cold.status == "succeeded", outcome.error
        assert outcome.result == cold.result
        assert [image["name"] for image in outcome.images] == [image["name"] for image in cold.images]
    if params.get("image"):
        assert len(warm[1].images) == 1 and os.path.getsize(warm[1].images[0]["path"]) > 0


def test_a_warm_result_over_the_limit_fails_as_a_cold_one_does(write_pipeline, run_job, tmp_path):
    control = write_pipeline(SIZED)
    limits = {"params": {"rows": 50}, "max_result_bytes": 300, "timeout_s": 30}
    pool = WarmPool(tmp_path / "warm", max_processes=1, idle_seconds=60)
    try:
        cold = run_job("run", control, **limits).outcome
        warm = pool.execute(Job(kind="run", control_path=control, work_dir=str(tmp_path / "w"), **limits), key="k")
    finally:
        pool.shutdown()

    assert warm.status == cold.status == "failed"
    assert warm.error == cold.error
    assert "over the 300 bytes limit" in warm.error


@pytest.mark.parametrize(
    "reply, error",
    [
        ({"result": "not json"}, "The pipeline's output result.json is not valid JSON"),
        ({"result": "[" * 10_000}, "The pipeline's output result.json is not valid JSON"),
        ({"result": {"text": "an object, not the file's text"}}, "Pipeline process exited without writing result.json"),
        ({"result": '{"text": "' + "x" * 300_000 + '"}'}, "result.json is 293 KB, over the 200 KB limit"),
    ],
    ids=["not JSON", "nested past the recursion limit", "not a text", "over the limit"],
)
def test_a_forged_result_in_a_reply_fails_only_its_own_run_as_a_bad_file_would(tmp_path, reply, error):
    # Pipeline code can write to the replies descriptor (test_warm_pool): what it puts there is
    # read with the file's limits and checks, and a "result" that is not a text is no result.
    watch = _WarmRun.__new__(_WarmRun)
    watch.job = Job(kind="run", control_path="/c.py", work_dir=str(tmp_path), max_result_bytes=200 * 1024)
    watch.keep_beside, watch.warm = str(tmp_path), SimpleNamespace(jobs=1)
    watch.done = {"done": 1, "retire": False, **reply}

    with pytest.raises(OutputError) as raised:
        watch.collect_outputs(Outcome(status="failed"))

    assert str(raised.value).startswith(error)
