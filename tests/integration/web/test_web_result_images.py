"""A run's images on its page: a thumbnail grid, each opening a lightbox, downloaded from the API's
URL under the run's own access rules; images that were dropped are named in the page's warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db

TINY_PNG = Path(__file__).resolve().parents[2] / "fixtures" / "data" / "tiny.png"


@pytest.fixture
def pipeline(make_pipeline):
    return make_pipeline()


def test_the_run_page_shows_each_image_as_a_thumbnail_that_opens_a_lightbox(alice_client, user, pipeline, make_run):
    images = [
        {"path": str(TINY_PNG), "name": "graph-1.png", "type": "png"},
        {"path": str(TINY_PNG), "name": "confusion <matrix>.png", "type": "png"},
    ]
    run = make_run(user, pipeline, result={"text": "done"}, images=images)

    page = alice_client.get(f"/runs/{run.pk}/").content.decode()

    assert 'id="result-images"' in page
    assert "2 images · click one to enlarge" in page
    for index, name in enumerate(["graph-1.png", "confusion &lt;matrix&gt;.png"]):
        url = f"/api/v1/runs/{run.pk}/images/{index}/"
        assert f'data-bs-target="#image-modal-{index}"' in page
        assert f'<img src="{url}" alt="{name}" loading="lazy" class="img-fluid">' in page
        assert f'id="image-modal-{index}"' in page
        assert f'<a class="btn btn-sm btn-outline-secondary ms-auto me-2" href="{url}">' in page
    assert "returned nothing to show" not in page
    assert f'id="download-zip" href="/api/v1/runs/{run.pk}/download/?format=zip"' in page
    response = alice_client.get(f"/api/v1/runs/{run.pk}/images/1/")
    assert (response.status_code, response["Content-Type"]) == (200, "image/png")


def test_an_image_dropped_by_the_runner_is_a_warning_on_the_run_page(alice_client, user, pipeline, make_run):
    warning = "Image 'huge.png' was dropped: it is 12 MB, over the 10 MB limit per image (MLOPEN_MAX_IMAGE_MB)."
    run = make_run(user, pipeline, result={"text": "done", "warnings": [warning]})

    page = alice_client.get(f"/runs/{run.pk}/").content.decode()

    assert "Image &#x27;huge.png&#x27; was dropped: it is 12 MB, over the 10 MB limit per image" in page
    assert 'id="result-images"' not in page


def test_someone_elses_run_image_is_a_404_for_an_outsider(client_for, user, outsider, pipeline, make_run):
    run = make_run(user, pipeline, result={}, images=[{"path": str(TINY_PNG), "name": "a.png", "type": "png"}])

    assert client_for(outsider).get(f"/api/v1/runs/{run.pk}/images/0/").status_code == 404
    assert client_for(user).get(f"/api/v1/runs/{run.pk}/images/0/").status_code == 200
