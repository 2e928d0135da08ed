"""Images in a result, through real child processes: matplotlib figures, PIL images, image bytes
and image files the run wrote are kept as checked files; an image that cannot be kept is dropped
with a warning, and the run still succeeds."""

from __future__ import annotations

import base64
import os
import zlib
from pathlib import Path

import pytest

from mlopen_runner import Job, images
from mlopen_runner.images import private_images_path
from mlopen_runner.job import Outcome
from mlopen_runner.warm_pool import WarmPool
from mlopen_runner.watching import _collect_outputs


def tiny_png(width: int = 2, height: int = 2) -> bytes:
    """A valid PNG made by hand, so tests need no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    pixels = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")


PNG_B64 = base64.b64encode(tiny_png()).decode()
SVG = '<?xml version="1.0"?>\n<!-- a comment -->\n<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"></svg>'


def returning(body: str, imports: str = "") -> str:
    """A control file whose run_pipeline runs `body` and returns `result`."""
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return (
        f"import base64, os\n{imports}\n"
        f"PNG = base64.b64decode({PNG_B64!r})\nSVG = {SVG!r}\n"
        "def train(inpt, params=None):\n    pass\n"
        f"def run_pipeline(input, model, args, params=None):\n{lines}\n    return result\n"
    )


def kept(outcome: Outcome) -> list[tuple[str, str, bytes]]:
    """(name, type, first bytes) of each image the worker kept."""
    return [(image["name"], image["type"], Path(image["path"]).read_bytes()[:8]) for image in outcome.images]


def succeeded(ran) -> Outcome:
    assert ran.outcome.status == "succeeded", (ran.outcome.error, ran.log)
    return ran.outcome


def test_a_matplotlib_figure_in_graphs_is_kept_as_a_png_image(write_pipeline, run_job):
    pytest.importorskip("matplotlib")
    control = write_pipeline(
        returning(
            """
fig, ax = plt.subplots()
ax.plot([1, 2, 3], [2, 4, 1])
result = {"graphs": [fig, {"data": [{"type": "bar", "y": [1]}]}], "text": "done"}
""",
            "import matplotlib.pyplot as plt",
        )
    )

    ran = run_job("run", control)

    outcome = succeeded(ran)
    assert kept(outcome) == [("graph-1.png", "png", b"\x89PNG\r\n\x1a\n")]
    assert [graph["kind"] for graph in outcome.result["graphs"]] == ["figure"]
    assert outcome.result["warnings"] == []
    # The worker's own copy, outside the folder the pipeline could write in.
    assert os.path.dirname(outcome.images[0]["path"]) == private_images_path(ran.job.work_dir)


def test_a_pil_image_in_imgs_is_kept_as_a_png_image(write_pipeline, run_job):
    pytest.importorskip("PIL")
    control = write_pipeline(
        returning('result = {"imgs": [Image.new("CMYK", (3, 2))]}', "from PIL import Image"),
    )

    outcome = succeeded(run_job("run", control))

    assert kept(outcome) == [("imgs-1.png", "png", b"\x89PNG\r\n\x1a\n")]


def test_png_bytes_in_graphs_and_svg_bytes_in_images_are_kept_as_they_are(write_pipeline, run_job):
    control = write_pipeline(returning('result = {"graphs": PNG, "images": [SVG.encode()]}'))

    outcome = succeeded(run_job("run", control))

    assert kept(outcome) == [("graph-1.png", "png", tiny_png()[:8]), ("images-1.svg", "svg", b"<?xml ve")]
    assert Path(outcome.images[1]["path"]).read_text() == SVG


def test_an_image_file_the_run_wrote_under_mlopenapp_static_images_is_kept_under_its_name(
    write_pipeline, run_job, sandbox_kind
):
    control = write_pipeline(
        returning(
            """
with open("mlopenapp/static/images/confusion.png", "wb") as out:
    out.write(PNG)
with open("chart.svg", "w") as out:
    out.write(SVG)
result = {"imgs": ["confusion.png", "chart.svg"]}
"""
        )
    )

    outcome = succeeded(run_job("run", control))

    assert kept(outcome) == [("confusion.png", "png", tiny_png()[:8]), ("chart.svg", "svg", b"<?xml ve")]


def test_an_image_over_the_size_cap_is_dropped_with_a_warning_and_the_run_succeeds(write_pipeline, run_job):
    control = write_pipeline(returning('result = {"graphs": [PNG + b"\\0" * 3000, PNG], "text": "still here"}'))

    outcome = succeeded(run_job("run", control, max_image_bytes=2048))

    assert kept(outcome) == [("graph-2.png", "png", tiny_png()[:8])]
    assert outcome.result["text"] == "still here"
    assert outcome.result["warnings"] == [
        "Image 'graph-1' was dropped: it is 3 KB, over the 2 KB limit per image (MLOPEN_MAX_IMAGE_MB)."
    ]


def test_images_past_the_count_cap_are_dropped_with_a_warning(write_pipeline, run_job):
    control = write_pipeline(returning('result = {"images": [PNG] * 5}'))

    outcome = succeeded(run_job("run", control, max_images=3))

    assert [image["name"] for image in outcome.images] == ["images-1.png", "images-2.png", "images-3.png"]
    assert outcome.result["warnings"] == ["2 more image(s) were dropped: a result keeps at most 3 (MLOPEN_MAX_IMAGES)."]


def test_a_file_named_in_imgs_that_is_a_link_to_a_host_file_is_refused_with_a_warning(
    write_pipeline, run_job, sandbox_kind, tmp_path
):
    host_file = tmp_path / "host-secret.png"
    host_file.write_bytes(tiny_png())
    control = write_pipeline(
        returning(
            f'os.symlink({str(host_file)!r}, "mlopenapp/static/images/secret.png")\nresult = {{"imgs": ["secret.png"]}}'
        )
    )

    outcome = succeeded(run_job("run", control))

    assert outcome.images == []
    [warning] = outcome.result["warnings"]
    assert warning.startswith("Image 'secret.png' was dropped: it is not a regular file")


def test_a_file_outside_the_runs_folder_is_refused_with_a_warning(write_pipeline, run_job, tmp_path):
    host_file = tmp_path / "elsewhere.png"
    host_file.write_bytes(tiny_png())
    control = write_pipeline(returning(f'result = {{"imgs": ["../../{host_file.name}", {str(host_file)!r}]}}'))

    outcome = succeeded(run_job("run", control))

    assert outcome.images == []
    assert outcome.result["warnings"] == [
        "Image 'elsewhere.png' was dropped: it is outside the run's folder.",
        "Image 'elsewhere.png' was dropped: it is outside the run's folder.",
    ]


def test_a_text_file_disguised_as_a_png_is_refused_with_a_warning(write_pipeline, run_job):
    control = write_pipeline(
        returning(
            """
with open("mlopenapp/static/images/plot.png", "w") as out:
    out.write("<html><script>alert(1)</script></html>")
result = {"imgs": ["plot.png", "missing.png", 42], "graphs": b"not an image either"}
"""
        )
    )

    outcome = succeeded(run_job("run", control))

    assert outcome.images == []
    assert outcome.result["warnings"] == [
        "imgs[2] is a int, not an image or an image file's name; it is not shown",
        "Image 'graph-1' was dropped: it is not a PNG, JPEG or SVG image.",
        "Image 'plot.png' was dropped: it is not a PNG, JPEG or SVG image.",
        "Image 'missing.png' was dropped: the run wrote no such file under mlopenapp/static/images/ or in its folder.",
    ]


def test_an_svg_with_entity_definitions_is_not_taken_for_an_image():
    billion_laughs = b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaa">]><svg>&a;</svg>'

    assert images.sniff(billion_laughs) is None
    assert images.sniff(SVG.encode()) == "svg"
    assert images.sniff(b"<svgfoo/>") is None
    assert images.sniff(b"\xff\xd8\xff\xe0") == "jpeg"


# The runner's own checks run in the pipeline's process, where pipeline code can change them: the
# worker checks every image again. These pipelines tamper with the runner from inside.
TAMPERED_SNIFF = """
import mlopen_runner.images as runner_images
runner_images.sniff = lambda head: "png"
"""

PLANTED_LINK = """
import mlopen_runner.images as runner_images
original_finish = runner_images.ImageWriter.finish
def finish(self):
    kept = original_finish(self)
    os.unlink(os.path.join(self.folder, "1.png"))
    os.symlink(HOST_FILE, os.path.join(self.folder, "1.png"))
    return kept
runner_images.ImageWriter.finish = finish
"""


def test_a_disguised_file_that_passes_a_tampered_runner_is_refused_by_the_worker(write_pipeline, run_job):
    control = write_pipeline(
        returning(
            'open("fake.png", "w").write("secret text")\nresult = {"imgs": ["fake.png"], "text": "ok"}',
            TAMPERED_SNIFF,
        )
    )

    outcome = succeeded(run_job("run", control))

    assert outcome.images == []
    assert outcome.result["warnings"] == [
        "Image 'fake.png' was dropped: it is not the PNG, JPEG or SVG image it was said to be."
    ]


def test_a_link_planted_among_the_images_after_the_runner_checked_them_is_refused_by_the_worker(
    write_pipeline, run_job, tmp_path
):
    host_file = tmp_path / "host.png"
    host_file.write_bytes(tiny_png())
    control = write_pipeline(
        returning('result = {"graphs": PNG}', f"HOST_FILE = {str(host_file)!r}\n{PLANTED_LINK}"),
    )

    outcome = succeeded(run_job("run", control))

    assert outcome.images == []
    [warning] = outcome.result["warnings"]
    assert warning.startswith("Image 'graph-1.png' was dropped: its file is not a regular file")


def test_the_worker_reads_only_image_files_named_as_the_runner_names_them(tmp_path):
    work = tmp_path / "work"
    (work / images.IMAGES_FOLDER).mkdir(parents=True)
    (work / images.IMAGES_FOLDER / "1.png").write_bytes(tiny_png())
    (work / images.IMAGES_FOLDER / "2.png").write_bytes(tiny_png())
    (work / "result.json").write_text(
        '{"images": [{"file": "../result.json", "name": "x"}, {"file": "1.png", "name": "../../etc/a\\u0007b.png"},'
        ' {"file": "2.png", "name": "..\\\\..\\\\evil:1.png"}, {"file": "1.png", "name": "again"},'
        ' "junk"], "warnings": []}'
    )
    job = Job(kind="run", control_path="/c.py", work_dir=str(work))
    outcome = Outcome(status="succeeded")

    _collect_outputs(job, outcome, str(work))

    # Nothing of a folder in the names, in any system's terms; a repeated file is copied once.
    assert [(image["name"], image["type"]) for image in outcome.images] == [
        ("ab.png", "png"),
        ("_.._evil_1.png", "png"),
    ]
    assert outcome.result["warnings"] == [
        "An image was dropped: the result names it '../result.json', not a file mlopen wrote.",
        "An image was dropped: the result names it '1.png', not a file mlopen wrote.",
        "An image was dropped: the result names it 'None', not a file mlopen wrote.",
    ]
    assert "images" not in outcome.result


def test_a_warm_run_keeps_its_images_beside_the_callers_folder(write_pipeline, tmp_path):
    control = write_pipeline(returning('result = {"graphs": PNG}'))
    pool = WarmPool(tmp_path / "warm", max_processes=1, idle_seconds=60)
    try:
        outcomes = [
            pool.execute(
                Job(kind="run", control_path=control, work_dir=str(tmp_path / f"run{n}"), timeout_s=30), None, key="k"
            )
            for n in (1, 2)
        ]
    finally:
        pool.shutdown()

    for n, outcome in enumerate(outcomes, start=1):
        assert outcome.status == "succeeded", outcome.error
        assert kept(outcome) == [("graph-1.png", "png", tiny_png()[:8])]
        assert os.path.dirname(outcome.images[0]["path"]) == str(tmp_path / f".run{n}.images")
