"""Images in a result: matplotlib figures, PIL images, PNG/JPEG/SVG bytes and image files the run wrote.

Child side (standard library only: the pipeline's environment may have neither matplotlib nor PIL,
so they are recognised by what they can do, never imported): `ImageWriter` turns each image the
pipeline returned into a file in `work_dir/result-images/` (figures and PIL images as PNG; PNG, JPEG
and SVG bytes as they are) and lists them in result.json as `{"file", "name"}`.

Parent side: `collect` (called by mlopen_runner.watching once the job is over) copies those files
out by descriptor and checks each again with `sniff`, since pipeline code can change anything in
its own process, the runner's checks there included.

An image that cannot be kept (over the size cap, past the count cap, not an image, a link) is
dropped with a warning in the result: an image is never a reason to fail a run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from collections.abc import Iterator
from typing import Any

from mlopen_runner import legacy, untrusted
from mlopen_runner.job import Job, Outcome

# In the job's folder; the parent reads images from here only, under names this module chose.
IMAGES_FOLDER = "result-images"
# Where the original mlopen's pipelines saved the images they named in "imgs", relative to the run's
# working folder (the original server's folder; mlopen_runner.legacy makes it in every run's).
LEGACY_IMAGES_FOLDER = legacy.IMAGES_DIR
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "svg": ".svg"}
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "svg": "image/svg+xml"}
# An SVG's root element must appear within this much of its start (after the XML declaration,
# comments and a DOCTYPE); bytes are sniffed from this much of their head.
SNIFF_BYTES = 64 * 1024
# Image formats Pillow writes as PNG without converting first.
_PNG_MODES = ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sniff(head: bytes) -> str | None:
    """ "png", "jpeg" or "svg" when `head` (an image's first SNIFF_BYTES) is one; None otherwise."""
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return "svg" if _is_svg(head) else None


def _is_svg(head: bytes) -> bool:
    """Whether the text's root element is <svg>: only the XML declaration, comments and a DOCTYPE
    without an internal subset (entity definitions, which no plain SVG needs) may come before it."""
    try:
        text = head[:SNIFF_BYTES].decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end of the head is fine
        if exc.start < len(head) - 4:
            return False
        text = head[: exc.start].decode("utf-8")
    text = text.removeprefix("\ufeff")
    while True:
        text = text.lstrip()
        for opening, closing in (("<?xml", "?>"), ("<!--", "-->"), ("<!DOCTYPE", ">")):
            if text.startswith(opening):
                end = text.find(closing)
                if end < 0 or (opening == "<!DOCTYPE" and "[" in text[:end]):
                    return False
                text = text[end + len(closing) :]
                break
        else:
            return text.startswith("<svg") and text[4:5] in (" ", "\t", "\r", "\n", ">", "/")


def is_image(value: object) -> bool:
    """A matplotlib figure (savefig), a PIL image (save and mode) or bytes of a PNG, JPEG or SVG."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return sniff(bytes(value[:SNIFF_BYTES])) is not None
    return _savefig_of(value) is not None or _is_pil_image(value)


def _savefig_of(value: object) -> Any:
    savefig = getattr(value, "savefig", None)
    return savefig if callable(savefig) and not isinstance(value, type) else None


def _is_pil_image(value: object) -> bool:
    return callable(getattr(value, "save", None)) and isinstance(getattr(value, "mode", None), str)


class ImageDropped(Exception):
    """This image is not kept; str() says why, for the result's warnings."""


class ImageWriter:
    """Writes a run's images into IMAGES_FOLDER and remembers them, at most `max_images` of at most
    `max_bytes` each. `entries` go into result.json as "images", `warnings` into its "warnings"."""

    def __init__(self, work_dir: str, max_images: int, max_bytes: int) -> None:
        self.work_dir = os.path.abspath(work_dir)
        self.folder = os.path.join(work_dir, IMAGES_FOLDER)
        self.max_images = max_images
        self.max_bytes = max_bytes
        self.entries: list[dict[str, str]] = []
        self.warnings: list[str] = []
        self.over_count = 0
        self.prepared = False

    def add(self, image: object, label: str) -> None:
        """Keep one image: an image object, or a path (str) of an image file the run wrote."""
        if len(self.entries) >= self.max_images:
            self.over_count += 1
            return
        name = os.path.basename(image) if isinstance(image, str) else label
        try:
            kind, file_name = self._write(image, len(self.entries) + 1)
        except ImageDropped as exc:
            self.warnings.append(f"Image {name!r} was dropped: {exc}.")
            return
        stem = os.path.splitext(name)[0] if isinstance(image, str) else name
        self.entries.append({"file": file_name, "name": stem + EXTENSIONS[kind]})

    def finish(self) -> tuple[list[dict[str, str]], list[str]]:
        """The images kept and the warnings about those that were not."""
        warnings = list(self.warnings)
        if self.over_count:
            warnings.append(
                f"{self.over_count} more image(s) were dropped: a result keeps at most {self.max_images} "
                "(MLOPEN_MAX_IMAGES)."
            )
        return self.entries, warnings

    def _write(self, image: object, number: int) -> tuple[str, str]:
        if not self.prepared:  # whatever an earlier attempt left there is not this run's
            untrusted.fresh_folder(self.folder)
            self.prepared = True
        if isinstance(image, str):
            data = self._read_named_file(image)
        elif isinstance(image, (bytes, bytearray, memoryview)):
            data = bytes(image)
        else:
            return "png", self._render(image, number)
        self._check_size(len(data))
        kind = sniff(data[:SNIFF_BYTES])
        if kind is None:
            raise ImageDropped("it is not a PNG, JPEG or SVG image")
        file_name = f"{number}{EXTENSIONS[kind]}"
        with open(os.path.join(self.folder, file_name), "wb") as handle:
            handle.write(data)
        return kind, file_name

    def _render(self, image: Any, number: int) -> str:  # the pipeline's object, checked below
        """A figure or PIL image saved as PNG; ImageDropped if it cannot be or is too big."""
        file_name = f"{number}.png"
        path = os.path.join(self.folder, file_name)
        try:
            savefig = _savefig_of(image)
            if savefig is not None:
                savefig(path, format="png")
            elif _is_pil_image(image):
                if image.mode not in _PNG_MODES:  # CMYK, YCbCr... have no PNG form
                    image = image.convert("RGBA")
                image.save(path, format="PNG")
            else:
                raise ImageDropped(f"a {type(image).__name__} is not an image")
            size = os.path.getsize(path)
        except ImageDropped:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the library raised, the run goes on without it
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise ImageDropped(f"it could not be saved as PNG ({type(exc).__name__}: {str(exc)[:200]})") from exc
        try:
            self._check_size(size)
        except ImageDropped:
            os.unlink(path)
            raise
        return file_name

    def _check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise ImageDropped(
                f"it is {untrusted.describe_size(size)}, over the {untrusted.describe_size(self.max_bytes)} limit "
                "per image (MLOPEN_MAX_IMAGE_MB)"
            )

    def _read_named_file(self, name: str) -> bytes:
        """The bytes of the file `name` the run wrote: under mlopenapp/static/images/, or relative to
        the run's folder. Never through a link: one could point at any file the process can read."""
        if not name or "\x00" in name:
            raise ImageDropped("it is not a file name")
        candidates = [name] if os.path.isabs(name) else [os.path.join(LEGACY_IMAGES_FOLDER, name), name]
        for candidate in candidates:
            path = os.path.normpath(os.path.join(self.work_dir, candidate))
            if os.path.commonpath([self.work_dir, path]) != self.work_dir:
                raise ImageDropped("it is outside the run's folder")
            if os.path.lexists(path):
                with self._open_inside(path) as fd:
                    return self._read_bounded(fd)
        raise ImageDropped(f"the run wrote no such file under {LEGACY_IMAGES_FOLDER}/ or in its folder")

    @contextlib.contextmanager
    def _open_inside(self, path: str) -> Iterator[int]:
        root = os.path.realpath(self.work_dir)
        if os.path.commonpath([root, os.path.realpath(os.path.dirname(path))]) != root:
            raise ImageDropped("it is outside the run's folder")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:  # ELOOP: a link
            raise ImageDropped(f"it is not a regular file ({exc.strerror})") from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ImageDropped("it is not a regular file")
            yield fd
        finally:
            os.close(fd)

    def _read_bounded(self, fd: int) -> bytes:
        self._check_size(os.fstat(fd).st_size)
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(self.max_bytes + 1)
        self._check_size(len(data))
        return data


# --- parent side: what the worker keeps ------------------------------------------------------------


def private_images_path(work_dir: str) -> str:
    """Where the parent keeps its own copies of a run's images, beside the job's folder as the
    model is. The caller removes the folder once stored."""
    folder, name = os.path.split(os.path.abspath(work_dir))
    return os.path.join(folder, f".{name}.images")


# The names the child gives image files (ImageWriter); nothing else is read.
_IMAGE_FILE = re.compile(r"[1-9][0-9]{0,5}\.(png|jpg|svg)")
_IMAGE_TYPES_BY_EXTENSION = {extension: kind for kind, extension in EXTENSIONS.items()}
_MAX_IMAGE_NAME_CHARS = 120
_UNSAFE_NAME_CHARACTERS = set('\\/:*?"<>|')


def collect(job: Job, outcome: Outcome, destination: str) -> None:
    """Copy the images result.json lists out of the job's folder and check each again.

    The child already wrote, sized and typed them, but pipeline code runs in that process and may
    have changed anything: an image is read by descriptor (never through a link), within the size
    cap, and must really be a PNG, JPEG or SVG of the type its name says. One that is not is
    dropped with a warning in the result, never the run.
    """
    result = outcome.result
    assert result is not None  # collected only from a result that was read
    listed = result.pop("images", None)
    warnings = found if isinstance(found := result.get("warnings"), list) else []
    result["warnings"] = warnings
    if not listed:
        return
    if not isinstance(listed, list):
        warnings.append("The result's list of images is malformed; no image is shown.")
        return
    shutil.rmtree(destination, ignore_errors=True)  # an earlier attempt's; ours, never the child's
    os.makedirs(destination, mode=0o700)
    source = os.path.join(job.work_dir, IMAGES_FOLDER)
    copied: set[str] = set()
    for entry in listed:
        if len(outcome.images) >= job.max_images:
            warnings.append(f"Images past the first {job.max_images} were dropped (MLOPEN_MAX_IMAGES).")
            break
        image, problem = _copy_image_out(source, entry, destination, job.max_image_bytes, copied)
        if image is None:
            warnings.append(problem)
        else:
            outcome.images.append(image)


def _copy_image_out(
    source: str, entry: Any, destination: str, max_bytes: int, copied: set[str]
) -> tuple[dict[str, str] | None, str]:
    """({"path", "name", "type"}, "") for an image that passed every check, else (None, why not)."""
    file_name = entry.get("file") if isinstance(entry, dict) else None
    if not isinstance(file_name, str) or not _IMAGE_FILE.fullmatch(file_name) or file_name in copied:
        return None, f"An image was dropped: the result names it {str(file_name)[:80]!r}, not a file mlopen wrote."
    copied.add(file_name)
    name = _display_name(entry.get("name"), file_name)
    target = os.path.join(destination, file_name)
    try:
        untrusted.copy_out(source, file_name, target, max_bytes)
    except untrusted.UntrustedFileError as exc:
        return None, f"Image {name!r} was dropped: {str(exc).replace(file_name, 'its file')}."
    except OSError as exc:  # its message would name the worker's own folders
        return None, f"Image {name!r} was dropped: it could not be copied ({exc.strerror})."
    with open(target, "rb") as handle:
        kind = sniff(handle.read(SNIFF_BYTES))
    if kind is None or kind != _IMAGE_TYPES_BY_EXTENSION[os.path.splitext(file_name)[1]]:
        os.unlink(target)
        return None, f"Image {name!r} was dropped: it is not the PNG, JPEG or SVG image it was said to be."
    return {"path": target, "name": name, "type": kind}, ""


def _display_name(raw: object, file_name: str) -> str:
    """The image's name as the pipeline gave it, made safe to show and to download under."""
    extension = os.path.splitext(file_name)[1]
    text = raw if isinstance(raw, str) else ""
    # No folder part in any system's terms (a zip of the result is unpacked on Windows too).
    text = "".join(
        "_" if character in _UNSAFE_NAME_CHARACTERS else character
        for character in os.path.basename(text)
        if character.isprintable()
    )
    stem = os.path.splitext(text)[0].strip(" .")[:_MAX_IMAGE_NAME_CHARS] or f"image-{os.path.splitext(file_name)[0]}"
    return stem + extension
