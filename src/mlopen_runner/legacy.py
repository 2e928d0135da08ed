"""What a run looks like from inside, for pipelines written for the original mlopen.

The original kept every control file and its support code in the package `mlopenapp/pipelines/`
and ran pipelines with its Django project folder as the working directory. Pipelines rely on both:
they import helpers through the package (`from mlopenapp.pipelines import text_preprocessing`),
pickle models whose classes live there, and use paths relative to that folder
(`mlopenapp/data/user_data/<upload>`, `mlopenapp/static/images/`). Inside a run:

- `mlopenapp.pipelines` is the pipeline version's own code folder (code_package), and the control
  file is imported as `mlopenapp.pipelines.<file stem>`;
- the job's folder, the run's working directory, holds the original layout (lay_out_work_dir):
  `mlopenapp/pipelines` (a link to the code folder, which the sandbox binds read-only),
  `mlopenapp/data/user_data/<name>` (links to the input and file params, under the names
  `str(input)` gives) and an empty, writable `mlopenapp/static/images/`.

The child makes the layout itself, in its own folder, so cold and warm runs get the same one
without the worker writing anywhere the pipeline can (a warm job's folder is the process's).
Nothing in it is read by the worker. A warm process moves a job's layout aside when the job is
done (set_aside_layout) and into the next job's folder (lay_out_work_dir's `spare`), only when it
is still exactly what lay_out_work_dir made: renaming one folder costs far less than making five,
which cost 0.2-0.4 ms each on some hosts' file systems. Standard library only: this runs in
pipeline environments.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import shutil
import stat
import sys
from collections.abc import Iterable, Iterator
from types import ModuleType

PACKAGE = "mlopenapp.pipelines"
PIPELINES_DIR = os.path.join("mlopenapp", "pipelines")
USER_DATA_DIR = os.path.join("mlopenapp", "data", "user_data")
IMAGES_DIR = os.path.join("mlopenapp", "static", "images")


def control_module_name(control_path: str) -> str:
    """The name the control file is imported under: classes it defines pickle under this name."""
    return f"{PACKAGE}.{os.path.splitext(os.path.basename(control_path))[0]}"


@contextlib.contextmanager
def code_package(code_dir: str) -> Iterator[ModuleType]:
    """`mlopenapp.pipelines` as the package of `code_dir` while the block runs; forgotten after it.

    Subfolders are subpackages whether or not they hold an `__init__.py` (namespace packages, as
    the original's `input/` was); an `__init__.py` in the code folder itself runs as the package's.
    """
    parent = importlib.import_module(PACKAGE.rpartition(".")[0])
    init = os.path.join(code_dir, "__init__.py")
    if os.path.isfile(init):
        spec = importlib.util.spec_from_file_location(PACKAGE, init, submodule_search_locations=[code_dir])
    else:
        spec = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
        spec.submodule_search_locations = [code_dir]
    if spec is None:
        raise ImportError(f"cannot import {init}")
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    setattr(parent, "pipelines", package)  # noqa: B010 - a submodule set on its parent, as import does
    try:
        if spec.loader is not None:
            spec.loader.exec_module(package)
        yield package
    finally:
        # Whatever was imported through it belongs to this code folder, not to the next job's.
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        with contextlib.suppress(AttributeError):
            del parent.pipelines


def lay_out_work_dir(
    work_dir: str, code_dir: str, data_files: Iterable[tuple[str, str]], spare: str | None = None
) -> None:
    """The original's folders in `work_dir`; `data_files` are (name, path) of the input and file params.

    A name is where `os.path.join("mlopenapp/data/user_data/", str(input))` looks: a relative path
    kept as it is (sub folders made), anything leaving the folder skipped. When two files carry one
    name, the first (the input) keeps it. `spare`: a layout set_aside_layout kept from the last job,
    moved in and brought up to date instead of making the folders anew.
    """
    links = {os.path.join(work_dir, PIPELINES_DIR): code_dir}
    user_data = os.path.join(work_dir, USER_DATA_DIR)
    for name, path in data_files:
        relative = user_data_name(name)
        if relative is not None:
            links.setdefault(os.path.join(user_data, relative), path)
    if spare is not None and _move_in(spare, work_dir) and not _drop_stale_links(user_data, links):
        shutil.rmtree(os.path.join(work_dir, "mlopenapp"))  # not brought up to date: made afresh below
    os.makedirs(os.path.join(work_dir, IMAGES_DIR), exist_ok=True)
    os.makedirs(user_data, exist_ok=True)
    for link, target in links.items():
        os.makedirs(os.path.dirname(link), exist_ok=True)
        _link(target, link)


def set_aside_layout(work_dir: str, spare: str) -> None:
    """Move the job's layout to `spare` for the next job, if the job left it as lay_out_work_dir made
    it: the same folders with the default mode, links only in pipelines and user_data (flat), and
    nothing but regular files in static/images (removed here, after the result copied what it
    named). Anything else is left where it is, and goes with the job's folder."""
    top = os.path.join(work_dir, "mlopenapp")
    try:
        if not _as_laid_out(top):
            return
        images = os.path.join(work_dir, IMAGES_DIR)
        for entry in os.scandir(images):
            os.unlink(entry.path)
        if os.path.lexists(spare):
            shutil.rmtree(spare)
        os.rename(top, spare)
    except OSError:
        return


def _as_laid_out(top: str) -> bool:
    expected = {
        "": {"pipelines": "link", "static": "dir", "data": "dir"},
        "static": {"images": "dir"},
        "data": {"user_data": "dir"},
        os.path.join("static", "images"): None,  # regular files only
        os.path.join("data", "user_data"): None,  # links only
    }
    mode = _default_folder_mode()
    for folder, entries in expected.items():
        path = os.path.join(top, folder) if folder else top
        status = os.lstat(path)
        if not stat.S_ISDIR(status.st_mode) or stat.S_IMODE(status.st_mode) != mode:
            return False
        with os.scandir(path) as scan:
            found = {entry.name: _kind(entry) for entry in scan}
        if entries is None:
            wanted = "file" if folder.endswith("images") else "link"
            if any(kind != wanted for kind in found.values()):
                return False
        elif found != entries:
            return False
    return True


def _kind(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return "link"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if entry.is_file(follow_symlinks=False) else "other"


def _default_folder_mode() -> int:
    """The mode os.makedirs gives a folder here (0o777 less the umask). Read and put back at once:
    called between jobs, when the process runs no thread of the pipeline's."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o777 & ~umask


def _move_in(spare: str, work_dir: str) -> bool:
    try:
        os.rename(spare, os.path.join(work_dir, "mlopenapp"))
    except OSError:
        return False
    return True


def _drop_stale_links(user_data: str, links: dict[str, str]) -> bool:
    """Remove the last job's links that this job's do not replace as they are; keep the same ones.
    False if one could not be read or removed (it would stay, pointing at the last job's file)."""
    pipelines = os.path.join(os.path.dirname(os.path.dirname(user_data)), "pipelines")
    try:
        for link in [pipelines, *(entry.path for entry in os.scandir(user_data))]:
            if os.readlink(link) != links.get(link):
                os.unlink(link)
    except OSError:
        return False
    return True


def user_data_name(name: str) -> str | None:
    """`name` as a path inside user_data, or None when it would leave it (absolute, `..`, NUL)."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if not parts or ".." in parts or name.startswith("/") or "\x00" in name:
        return None
    return os.path.join(*parts)


def _link(target: str, link: str) -> None:
    with contextlib.suppress(FileExistsError):
        os.symlink(target, link)
