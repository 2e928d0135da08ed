"""A run's images through the API: listed in its result as {"name", "url"}, each url a download of
the image with its own image/* type, under the same access rules as the run."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db

TINY_PNG = Path(__file__).resolve().parents[2] / "fixtures" / "data" / "tiny.png"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><script>alert(1)</script></svg>'


@pytest.fixture
def run_with_images(make_run, tmp_path):
    """A succeeded run of the admin's whose result holds a PNG and an SVG, as a worker stores them."""
    from mlopen.core import storage
    from mlopen.runs import results

    def make(owner):
        run = make_run(owner, result={"columns": None, "data": None, "graphs": [], "text": "two images"})
        svg = tmp_path / "drawing.svg"
        svg.write_bytes(SVG)
        storage.delete_tree(run.result_folder)
        run.result_folder, run.result_rows = results.store_result(
            run.pk,
            {"columns": None, "data": None, "graphs": [], "text": "two images", "warnings": []},
            [
                {"path": str(TINY_PNG), "name": "graph-1.png", "type": "png"},
                {"path": str(svg), "name": "drawing.svg", "type": "svg"},
            ],
        )
        run.save()
        return run

    return make


@pytest.fixture
def mallory_api(api_for, django_user_model):
    return api_for(django_user_model.objects.create_user(username="mallory", password="mallory-password-1"))


def test_run_detail_and_result_list_each_image_with_a_url_that_downloads_it(api, run_with_images):
    run = run_with_images(api.user)

    listed = api.get(f"/api/v1/runs/{run.pk}/").json()["result"]["images"]
    paged = api.get(f"/api/v1/runs/{run.pk}/result/").json()["images"]

    assert (
        listed
        == paged
        == [
            {"name": "graph-1.png", "url": f"http://testserver/api/v1/runs/{run.pk}/images/0/"},
            {"name": "drawing.svg", "url": f"http://testserver/api/v1/runs/{run.pk}/images/1/"},
        ]
    )
    response = api.get(listed[0]["url"])
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'attachment; filename="graph-1.png"'
    assert b"".join(response.streaming_content) == TINY_PNG.read_bytes()


def test_an_svg_image_downloads_in_a_sandbox_that_runs_no_script(api, run_with_images):
    run = run_with_images(api.user)

    response = api.get(f"/api/v1/runs/{run.pk}/images/1/")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response["Content-Disposition"] == 'attachment; filename="drawing.svg"'
    assert response["Content-Security-Policy"].startswith("sandbox; default-src 'none'")
    assert response["X-Content-Type-Options"] == "nosniff"


def test_outsider_gets_404_for_someone_elses_run_image(api, mallory_api, run_with_images):
    run = run_with_images(api.user)

    response = mallory_api.get(f"/api/v1/runs/{run.pk}/images/0/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "errors": {}}


@pytest.mark.parametrize("index", ["2", "9999", "1234567"])
def test_an_image_number_past_the_last_is_404(api, run_with_images, index):
    run = run_with_images(api.user)

    response = api.get(f"/api/v1/runs/{run.pk}/images/{index}/")

    assert response.status_code == 404


def test_a_result_without_images_lists_none(api, make_run):
    run = make_run(api.user)

    assert api.get(f"/api/v1/runs/{run.pk}/").json()["result"]["images"] == []


def test_the_zip_export_holds_the_table_and_every_image_by_its_name(api, make_run, run_with_images):
    import io
    import zipfile

    run = run_with_images(api.user)

    response = api.get(f"/api/v1/runs/{run.pk}/download/?format=zip")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}.zip"'
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.namelist() == ["images/graph-1.png", "images/drawing.svg"]
    assert archive.read("images/graph-1.png") == TINY_PNG.read_bytes()
    assert archive.read("images/drawing.svg") == SVG
    with_table = make_run(api.user)
    archive = zipfile.ZipFile(
        io.BytesIO(b"".join(api.get(f"/api/v1/runs/{with_table.pk}/download/?format=zip").streaming_content))
    )
    assert archive.namelist() == [f"run-{with_table.pk}.csv"]
    assert archive.read(f"run-{with_table.pk}.csv").decode().startswith("name,score\r\nrow1,1\r\n")


def test_a_result_with_neither_table_nor_images_has_no_zip(api, make_run):
    run = make_run(api.user, result={"columns": None, "data": None, "graphs": [], "text": "words only"})

    response = api.get(f"/api/v1/runs/{run.pk}/download/?format=zip")

    assert response.status_code == 404
    assert response.json()["detail"] == f"Run {run.pk}'s result has neither a table nor images to download."
