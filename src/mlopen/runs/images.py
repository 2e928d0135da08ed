"""A run's images: stored in the images/ folder of its result, listed in its result.json.

The worker hands over images the runner already copied out of the run's folder and checked (by
descriptor, within MLOPEN_MAX_IMAGE_MB, really a PNG, JPEG or SVG: mlopen_runner.watching). Here
they are stored under names of ours and listed as {"name", "file", "type"}; reading the list back
never trusts it: an entry of another shape is not shown, and a file name that is not ours is never
opened.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO

from mlopen.core import storage
from mlopen_runner.images import CONTENT_TYPES, EXTENSIONS

FOLDER = "images"
# Stored files are "<n>.png|jpg|svg": nothing from the pipeline is ever part of a path.
_STORED_FILE = re.compile(r"[1-9][0-9]{0,5}\.(png|jpg|svg)")


def store(result_folder: str, images: list[dict]) -> list[dict]:
    """Store the runner's checked images ({"path", "name", "type"}); the list for result.json.

    Names repeat when two images had the same name; the later ones get " (2)", " (3)"..., so each
    download and each file of an export has a name of its own.
    """
    stored: list[dict[str, str]] = []
    taken: set[str] = set()
    for number, image in enumerate(images, start=1):
        kind = image["type"]
        file_name = f"{number}{EXTENSIONS[kind]}"
        storage.copy_file_in(f"{result_folder}/{FOLDER}/{file_name}", Path(image["path"]))
        stored.append({"name": _unique(image["name"], taken), "file": file_name, "type": kind})
    return stored


def _unique(name: str, taken: set[str]) -> str:
    stem, dot, extension = name.rpartition(".")
    candidate, copy = name, 1
    while candidate.lower() in taken:
        copy += 1
        candidate = f"{stem} ({copy}).{extension}" if dot else f"{name} ({copy})"
    taken.add(candidate.lower())
    return candidate


def problem_with(entry: object) -> str | None:
    """Why a stored image entry cannot be shown, or None."""
    if not isinstance(entry, dict):
        return "is not an object"
    if not isinstance(entry.get("name"), str) or not entry["name"]:
        return "has no name"
    if entry.get("type") not in CONTENT_TYPES:
        return "is not a PNG, JPEG or SVG image"
    file_name = entry.get("file")
    if not isinstance(file_name, str) or not _STORED_FILE.fullmatch(file_name):
        return "names no stored file"
    if not file_name.endswith(EXTENSIONS[entry["type"]]):
        return "names a file of another type"
    return None


def open_image(result_folder: str, entry: dict) -> IO[bytes]:
    """The stored file of an entry that problem_with() passed; FileNotFoundError if it is gone."""
    return storage.open_stored(f"{result_folder}/{FOLDER}/{entry['file']}")


def content_type(entry: dict) -> str:
    return CONTENT_TYPES[entry["type"]]
