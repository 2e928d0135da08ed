"""Static files: hashed names, gzip and brotli copies, cached for good by the browser.

`mlopen serve` (and so `./start`) runs `collectstatic` before the web server starts: it writes each
file under a name carrying a hash of its content (`plotly.min.<hash>.js`), a `.gz` and a `.br` copy
beside it, and the manifest that maps names to hashed names. whitenoise then serves the hashed names
with `Cache-Control: max-age=315360000, public, immutable` (a repeat visit asks for no script again)
and picks the compressed copy the browser accepts.
"""

from __future__ import annotations

import os

import brotli
from django.contrib.staticfiles.storage import ManifestStaticFilesStorage
from django.core.management import call_command
from whitenoise.compress import Compressor
from whitenoise.storage import CompressedManifestStaticFilesStorage

# What plotly's package data holds beside plotly.min.js (its Jupyter widget bundle, sample datasets
# and templates): no page uses them, and hashing and compressing them would add ~5 MB and seconds.
IGNORED = ["widgetbundle.js", "datasets", "templates"]


def collect() -> None:
    """Collect, hash and compress the static files into STATIC_ROOT, quietly (`mlopen serve`)."""
    call_command("collectstatic", interactive=False, verbosity=0, ignore_patterns=IGNORED)


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    # A name missing from the manifest raises in stored_name (caught in `url` below), instead of
    # Django's non-strict fallback that hashes a file that may not be in STATIC_ROOT.
    manifest_strict = True
    # Only CSS url() and @import are rewritten to hashed names: the vendored bootstrap files end in
    # a sourceMappingURL comment naming a .map file we do not ship, which would fail the collection.
    patterns = (("*.css", ManifestStaticFilesStorage.patterns[0][1][:2]),)

    def stored_name(self, name: str) -> str:
        """The hashed name; the plain name when `collectstatic` has not collected this file (a checkout
        run without `mlopen serve`, the tests' live server): whitenoise then serves it from the app's
        folder (WHITENOISE_USE_FINDERS) with a short cache, rather than the page failing."""
        try:
            return super().stored_name(name)
        except ValueError:
            return name

    def create_compressor(self, **kwargs):
        return _Compressor(**kwargs)

    def compress_files(self, paths):
        # A hashed name's content never changes: what an earlier collectstatic compressed already
        # is not compressed again (brotli takes ~8 s for plotly.js on each start otherwise).
        fresh = [path for path in paths if not _compressed_already(self.path(path))]
        return super().compress_files(fresh)


class _Compressor(Compressor):
    @staticmethod
    def compress_brotli(data: bytes) -> bytes:
        # Quality 9, not brotli's default 11: plotly.js comes out at 1.23 MB, not 1.11 MB, once per
        # browser (its hashed name is cached for good), and compresses in 0.6 s instead of 6 s at
        # quality 10 and 20-30 s at 11 on a busy 2-core host. Every first start of a home (every
        # `mlopen serve` the tests start, too) pays it; 10 and 11 are brotli's slow search levels.
        return brotli.compress(data, quality=9)


def _compressed_already(full_path: str) -> bool:
    return os.path.exists(full_path + ".br") and os.path.exists(full_path + ".gz")
