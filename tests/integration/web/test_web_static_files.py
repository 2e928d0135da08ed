"""Static files as `mlopen serve` serves them: collected under hashed names with .br and .gz copies,
referenced by those names from the pages, and cached by the browser for good."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client, override_settings

from mlopen.core import staticfiles

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def collected_once(tmp_path_factory):
    """collectstatic (as `mlopen serve` runs it) into a fresh STATIC_ROOT, once: brotli takes seconds."""
    root = tmp_path_factory.mktemp("static")
    with override_settings(STATIC_ROOT=root):
        staticfiles.collect()
    return root


@pytest.fixture
def collected(settings, collected_once):
    """The collected folder as STATIC_ROOT: the storage and the middleware of a new client read it."""
    settings.STATIC_ROOT = collected_once
    return collected_once


def test_collectstatic_writes_hashed_names_with_brotli_and_gzip_copies(collected):
    manifest = json.loads((collected / "staticfiles.json").read_text())["paths"]
    hashed = manifest["vendor/plotly/plotly.min.js"]
    assert re.fullmatch(r"vendor/plotly/plotly\.min\.[0-9a-f]{12}\.js", hashed)
    for suffix in ("", ".br", ".gz"):
        assert (collected / (hashed + suffix)).is_file()
    assert (collected / (hashed + ".br")).stat().st_size < (collected / hashed).stat().st_size / 3
    # Only the hashed copies are kept, and none of plotly's package data that no page uses.
    assert not (collected / "vendor/plotly/plotly.min.js").exists()
    assert not any(name.startswith("vendor/plotly/datasets") for name in manifest)
    assert "vendor/plotly/widgetbundle.js" not in manifest


def test_collecting_again_compresses_nothing_new(collected):
    hashed = json.loads((collected / "staticfiles.json").read_text())["paths"]["mlopen/app.js"]
    brotli_copy = collected / (hashed + ".br")
    before = brotli_copy.stat().st_mtime_ns
    staticfiles.collect()
    assert brotli_copy.stat().st_mtime_ns == before


def test_pages_reference_hashed_names_served_compressed_with_a_long_immutable_cache(collected, user):
    client = Client()
    client.force_login(user)
    page = client.get("/").content.decode()
    scripts = re.findall(r'<script src="(/static/[^"]+)"', page)
    assert scripts and all(re.search(r"\.[0-9a-f]{12}\.js$", src) for src in scripts), scripts

    response = client.get(scripts[0], HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert response.status_code == 200
    assert response["Content-Encoding"] == "br"
    assert response["Cache-Control"] == "max-age=315360000, public, immutable"


def test_graph_frame_loads_plotly_by_its_hashed_name(collected):
    from django.templatetags.static import static

    assert re.fullmatch(r"/static/vendor/plotly/plotly\.min\.[0-9a-f]{12}\.js", static("vendor/plotly/plotly.min.js"))


def test_without_collectstatic_pages_use_plain_names_with_a_short_cache(settings, tmp_path, user):
    settings.STATIC_ROOT = tmp_path / "empty"
    settings.STATIC_ROOT.mkdir()
    client = Client()
    client.force_login(user)
    page = client.get("/").content.decode()
    assert '<script src="/static/mlopen/app.js"></script>' in page
    response = client.get("/static/mlopen/app.js")
    assert response.status_code == 200
    assert response["Cache-Control"] == "max-age=60, public"
