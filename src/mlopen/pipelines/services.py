"""Uploading pipelines: validate a control file and its support files, then store a new version.

Everything is checked before anything is stored: a refused upload leaves the pipeline exactly as
it was. get_params is evaluated in a child process (never in the web process) with a time limit.
Who may publish a version of an existing pipeline (mlopen.pipelines.rules) is checked here, first
and again when the version is stored, so no page, API view or command can skip it.
"""

from __future__ import annotations

import ast
import hashlib
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from mlopen.core import storage
from mlopen.core.roles import can_upload_pipelines
from mlopen.pipelines import builds, environments, rules, runtimes, support
from mlopen.pipelines.control import PipelineForbidden, PipelineRejected, evaluate_params
from mlopen.pipelines.models import Pipeline, PipelineVersion

MAX_CONTROL_BYTES = 5 * 1024 * 1024
REQUIREMENTS_FILENAME = "requirements.txt"
REQUIRED_FUNCTIONS = ("train", "run_pipeline")
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}$")


@dataclass
class IncomingFile:
    """A file arriving with an upload: its name and a way to read it in chunks.

    ``name`` is the name the client sent, folders included (a support file's path); only
    mlopen.pipelines.support decides what part of it is kept.
    """

    name: str
    chunks: object  # callable returning an iterable of bytes
    size: int | None = None

    @classmethod
    def from_uploaded(cls, uploaded) -> IncomingFile:
        # client_path: the name before Django dropped its folders (mlopen.core.uploads).
        name = getattr(uploaded, "client_path", None) or uploaded.name
        return cls(name=name, chunks=uploaded.chunks, size=uploaded.size)

    @classmethod
    def from_path(cls, path: Path, name: str | None = None) -> IncomingFile:
        def chunks():
            with open(path, "rb") as handle:
                yield from iter(lambda: handle.read(1024 * 1024), b"")

        return cls(name=name or path.name, chunks=chunks, size=path.stat().st_size)


@dataclass
class UploadRequest:
    control: IncomingFile
    # Each kept under the path it was sent with (textnet/model.py), beside the control file.
    support_files: list[IncomingFile] = field(default_factory=list)
    name: str = ""
    description: str = ""
    requirements: IncomingFile | None = None
    # The files of a picked folder (webkitRelativePath as names): like support_files, but hidden
    # files and __pycache__ are left out rather than refused.
    support_folder: list[IncomingFile] = field(default_factory=list)
    # A zip of support files, unpacked with their paths (mlopen.pipelines.support.unpack_zip).
    support_zip: IncomingFile | None = None
    # The runtime's name; empty: MLOPEN_DEFAULT_RUNTIME. An unknown name is refused (400).
    runtime: str = ""
    # Whether its runs need an input dataset (Pipeline.input_required); None leaves it as it is.
    input_required: bool | None = None


def validate_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME_OK.match(name):
        raise PipelineRejected(
            "Pipeline names are 1-100 characters: letters, digits, spaces, '.', '_' and '-', "
            "starting with a letter or digit.",
            field="name",
        )
    return name


def check_control_source(filename: str, source: bytes) -> str | None:
    """Refuse a control file that cannot work; return its module docstring (a default description)."""
    if len(source) > MAX_CONTROL_BYTES:
        raise PipelineRejected(
            f"The control file is {len(source) // 1024} KB; the limit is {MAX_CONTROL_BYTES // 1024} KB."
        )
    try:
        text = source.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PipelineRejected(
            f"{filename} is not UTF-8 text (byte {exc.start}). Upload the Python source file."
        ) from None
    try:
        tree = ast.parse(text, filename=filename)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        snippet = (exc.text or "").strip()
        detail = f": {snippet}" if snippet else ""
        raise PipelineRejected(f"Syntax error in {filename} at {where}: {exc.msg}{detail}") from None
    defined = _top_level_names(tree)
    missing = [name for name in REQUIRED_FUNCTIONS if name not in defined]
    if missing:
        raise PipelineRejected(
            f"{filename} must define {' and '.join(missing)}: a control file needs both train(inpt, params=None) "
            "and run_pipeline(input, model, args, params=None)."
        )
    return ast.get_docstring(tree)


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names a module binds at top level: def, class, assignment and import all count."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.If, ast.Try)):
            # `try: from fast import train / except ImportError: def train(...)` and friends.
            inner = ast.Module(
                body=[
                    *getattr(node, "body", []),
                    *getattr(node, "orelse", []),
                    *[n for h in getattr(node, "handlers", []) for n in h.body],
                ],
                type_ignores=[],
            )
            names |= _top_level_names(inner)
    return names


def saves_model(code_dir: Path) -> bool:
    """Whether a version's code saves a model (calls save_pipeline, in any of its Python files).

    Read from the sources, not run: a pipeline that never saves one (a data explorer, a k-NN that
    keeps its samples) runs without a trained model, so it is never "untrained".
    """
    for path in sorted(code_dir.rglob("*.py")):
        if path.is_file() and "save_pipeline" in path.read_text(encoding="utf-8", errors="replace"):
            return True
    return False


def _read_all(incoming: IncomingFile, limit: int) -> bytes:
    data = bytearray()
    for chunk in incoming.chunks():
        data.extend(chunk)
        if len(data) > limit:
            raise PipelineRejected(f"{incoming.name} is larger than {limit // 1024} KB.")
    return bytes(data)


def _write(path: Path, incoming: IncomingFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for chunk in incoming.chunks():
            out.write(chunk)


class PipelineUnchanged(Exception):
    """The upload is byte for byte the pipeline's latest version (same control file, support files,
    requirements and runtime): no version is made; ``version`` is that latest one."""

    def __init__(self, version: PipelineVersion):
        super().__init__(f"{version.pipeline.name} version {version.number} has exactly these files.")
        self.version = version
        self.message = (
            f"Nothing changed: these files are exactly those of {version.pipeline.name} version {version.number}, "
            "so no new version was made."
        )


def upload_pipeline(request: UploadRequest, user) -> PipelineVersion:
    """Validate an upload and store it as the next version of the pipeline with that name.

    Raises PipelineUnchanged when the files are those of the latest version already."""
    control_name = storage.safe_filename(request.control.name, fallback="control.py")
    if not control_name.endswith(".py"):
        raise PipelineRejected(f"The control file must be a Python file ending in .py (got {control_name!r}).")
    name = validate_name(request.name or Path(control_name).stem)
    # Before the files are read or get_params runs: a refusal for who you are comes first.
    check_may_publish(user, Pipeline.objects.filter(name=name).first(), name)
    source = _read_all(request.control, MAX_CONTROL_BYTES)
    docstring = check_control_source(control_name, source)

    runtime_name = (request.runtime or "").strip() or settings.MLOPEN_DEFAULT_RUNTIME
    runtimes.lock_of(runtime_name)  # an unknown runtime is refused before anything is stored
    staging = settings.MLOPEN_WORK_DIR / "uploads" / uuid.uuid4().hex
    code_dir = staging / "code"
    try:
        # A full disk (the staging folder's or the storage's) is the server's state, not a fault
        # of the upload: answered 507 in plain words, and nothing of it is kept.
        with storage.full_disk_as(lambda message: PipelineRejected(message, field=None, status=507)):
            code_dir.mkdir(parents=True)
            placed, requirements = _place_support_files(request, control_name, staging)
            requirements_text = ""
            if requirements is not None:
                requirements_text = environments.check_requirements(_read_all(requirements, 256 * 1024))
            (code_dir / control_name).write_bytes(source)
            for path, incoming in placed:
                _write(code_dir / path, incoming)
            # Before get_params runs (seconds, in a child): the same files again are no new version.
            same = _identical_latest(
                name, control_name, [p for p, _ in placed], code_dir, requirements_text, runtime_name
            )
            if same is not None:
                raise PipelineUnchanged(same)
            (staging / "work").mkdir()
            if requirements_text:
                # The control file may import what only its own environment has: its forms are read
                # there, once the environment is built (environments.build_for_version).
                specs = {"train": {}, "run": {}}
            else:
                specs = _params_at_upload(code_dir / control_name, staging / "work", runtime_name)
            return _store_version(
                name,
                request.description or docstring or "",
                control_name,
                [path for path, _ in placed],
                code_dir,
                specs,
                requirements_text,
                user,
                runtime_name,
                saves_model=saves_model(code_dir),
                input_required=request.input_required,
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _identical_latest(
    name: str, control_name: str, support_names: list[str], code_dir: Path, requirements: str, runtime_name: str
) -> PipelineVersion | None:
    """The pipeline's latest version when the upload has exactly its files, requirements and runtime."""
    latest = (
        PipelineVersion.objects.filter(pipeline__name=name).select_related("pipeline", "runtime").order_by("-number")
    ).first()
    if (
        latest is None
        or latest.control_filename != control_name
        or sorted(latest.support_files) != sorted(support_names)
        or latest.requirements != requirements
        or latest.runtime is None
        or latest.runtime.digest != runtimes.digest_of(runtimes.lock_of(runtime_name))
    ):
        return None
    for file_name in [control_name, *support_names]:
        try:
            with storage.open_stored(f"{latest.folder}/{file_name}") as stored:
                kept = hashlib.file_digest(stored, "sha256").hexdigest()
        except FileNotFoundError:
            return None
        with open(code_dir / file_name, "rb") as handle:
            if hashlib.file_digest(handle, "sha256").hexdigest() != kept:
                return None
    return latest


def _place_support_files(
    request: UploadRequest, control_name: str, staging: Path
) -> tuple[list[tuple[str, IncomingFile]], IncomingFile | None]:
    """Every support file with the path it is kept under, and the requirements file if one came
    among them; refused (before anything is stored) on any bad path (mlopen.pipelines.support)."""
    candidates = [(f, "support_files") for f in request.support_files]
    candidates += [(f, "support_folder") for f in request.support_folder if not support.left_out(f.name)]
    if request.support_zip is not None:
        zip_path = staging / "support.zip"
        _write(zip_path, request.support_zip)
        shown = storage.safe_filename(request.support_zip.name, fallback="the zip")
        for path, extracted in support.unpack_zip(zip_path, shown, staging / "unzipped"):
            candidates.append((IncomingFile.from_path(extracted, name=path), "support_zip"))

    placed: list[tuple[str, IncomingFile]] = []
    fields: list[str] = []
    requirements = request.requirements
    for incoming, form_field in candidates:
        path = support.support_path(incoming.name, form_field)
        if path == REQUIREMENTS_FILENAME:
            # requirements.txt uploaded beside the control file names the pipeline's environment.
            if requirements is not None:
                raise PipelineRejected(
                    "Two requirements.txt files were given; send one, as the requirements "
                    "field or among the support files.",
                    field="requirements",
                )
            requirements = incoming
            continue
        placed.append((path, incoming))
        fields.append(form_field)
    support.check_distinct(control_name, [path for path, _ in placed], fields)
    return placed, requirements


def _params_at_upload(control: Path, work_dir: Path, runtime_name: str) -> dict:
    """get_params in the runtime the version will run on when this host has it built; while it is
    still being built (the first minutes of a new install), in the platform's interpreter."""
    digest = runtimes.digest_of(runtimes.lock_of(runtime_name))
    if not runtimes.built_here(digest):
        return evaluate_params(control, work_dir)
    return evaluate_params(
        control,
        work_dir,
        python=str(runtimes.python_of(digest)),
        extra_pythonpath=[str(environments.sdk_overlay())],
    )


def check_may_publish(user, pipeline: Pipeline | None, name: str) -> None:
    """Refuse ``user`` a new pipeline called ``name`` (``pipeline`` None) or a new version of ``pipeline``.

    ``user`` None is the platform itself (loading the demo pipelines).
    """
    if user is None:
        return
    if pipeline is None:
        if not can_upload_pipelines(user):
            raise PipelineForbidden("Uploading pipelines needs the author or admin role.")
        return
    if not rules.can_see(user, pipeline):
        raise PipelineRejected(rules.name_taken(name), field="name")
    if not rules.can_publish(user, pipeline):
        raise PipelineForbidden(rules.publish_refusal(pipeline))


def set_input_required(user, pipeline: Pipeline, required: bool) -> Pipeline:
    """Whoever may publish the pipeline says whether its runs need an input dataset."""
    if not rules.can_manage(user, pipeline):
        raise PipelineForbidden(rules.manage_refusal(pipeline))
    if pipeline.input_required != required:
        pipeline.input_required = required
        pipeline.save(update_fields=["input_required", "updated_at"])
    return pipeline


# A bound on the setting, not a policy: ten years.
MAX_RETENTION_DAYS = 3650


def set_retention_days(user, pipeline: Pipeline, days: int | None) -> Pipeline:
    """Whoever may publish the pipeline says how long its finished runs are kept (None: the platform's
    MLOPEN_RETENTION_DAYS; 0: forever)."""
    if not rules.can_manage(user, pipeline):
        raise PipelineForbidden(rules.manage_refusal(pipeline))
    if days is not None and not 0 <= days <= MAX_RETENTION_DAYS:
        raise PipelineRejected(f"retention_days must be between 0 and {MAX_RETENTION_DAYS}, or null.", "retention_days")
    if pipeline.retention_days != days:
        pipeline.retention_days = days
        pipeline.save(update_fields=["retention_days", "updated_at"])
    return pipeline


def _store_version(  # noqa: PLR0913 - the parts of one upload, checked by upload_pipeline
    name,
    description,
    control_name,
    support_names,
    code_dir,
    specs,
    requirements,
    user,
    runtime_name,
    *,
    saves_model: bool,
    input_required: bool | None,
):
    for attempt in range(3):
        try:
            with transaction.atomic():
                pipeline, created = Pipeline.objects.get_or_create(
                    name=name, defaults={"description": description, "created_by": user}
                )
                if not created:
                    # Again, inside the transaction: the pipeline may have been made since the first check.
                    check_may_publish(user, pipeline, name)
                if not created and description:
                    pipeline.description = description
                    pipeline.save(update_fields=["description", "updated_at"])
                if input_required is not None and input_required != pipeline.input_required:
                    pipeline.input_required = input_required
                    pipeline.save(update_fields=["input_required", "updated_at"])
                runtime = runtimes.current(runtime_name)
                last = pipeline.versions.order_by("-number").values_list("number", flat=True).first() or 0
                number = last + 1
                folder = f"pipelines/{pipeline.pk}/v{number}"
                version = PipelineVersion.objects.create(
                    pipeline=pipeline,
                    number=number,
                    control_filename=control_name,
                    support_files=support_names,
                    folder=folder,
                    description=description,
                    params_train=specs["train"],
                    params_run=specs["run"],
                    requirements=requirements,
                    saves_model=saves_model,
                    runtime=runtime,
                    created_by=user,
                )
                # Its runs wait, queued, until a worker has built it (the demo's, at first start).
                builds.request_runtime_build(runtime, pipeline.queue)
                written: list[str] = []
                try:
                    # Only once the number is ours: an upload that lost the race for it must not
                    # overwrite the files of the version that won (stored files are write-once).
                    for file_name in [control_name, *support_names]:
                        storage.copy_file_in(f"{folder}/{file_name}", code_dir / file_name)
                        written.append(f"{folder}/{file_name}")
                    if requirements:
                        # In the same transaction: no run can see the version before it is "building"
                        # (and so refused until its environment is ready).
                        builds.request_environment(version)
                except BaseException:
                    # The files copied so far go with the row that is rolled back (the number is
                    # still ours: no other upload writes there), and only they: nothing else is touched.
                    for name in written:
                        storage.delete_file(name)
                    raise
            break
        except IntegrityError:
            # Another upload of the same name took this version number first: take the next one.
            if attempt == 2:
                raise
    return version
