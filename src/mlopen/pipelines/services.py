"""Uploading pipelines: validate a control file and its support files, then store a new version.

Everything is checked before anything is stored: a refused upload leaves the pipeline exactly as
it was. get_params is evaluated in a child process (never in the web process) with a time limit.
Who may publish a version of an existing pipeline (mlopen.pipelines.rules) is checked here, first
and again when the version is stored, so no page, API view or command can skip it.
"""

from __future__ import annotations

import ast
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from mlopen.core import storage
from mlopen.core.roles import can_upload_pipelines
from mlopen.pipelines import params as params_mod
from mlopen.pipelines import rules
from mlopen.pipelines.models import Pipeline, PipelineVersion
from mlopen_runner import Job, execute

MAX_CONTROL_BYTES = 5 * 1024 * 1024
REQUIREMENTS_FILENAME = "requirements.txt"
REQUIRED_FUNCTIONS = ("train", "run_pipeline")
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}$")


class PipelineRejected(ValueError):
    """An upload that cannot be stored. ``field`` names the form field the message belongs to."""

    def __init__(self, message: str, field: str = "control"):
        super().__init__(message)
        self.message = message
        self.field = field


class PipelineForbidden(PipelineRejected):
    """The user may not do this to the pipeline (pages and API answer 403); the message says who may."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message, field=field)


@dataclass
class IncomingFile:
    """A file arriving with an upload: its name and a way to read it in chunks."""

    name: str
    chunks: object  # callable returning an iterable of bytes
    size: int | None = None

    @classmethod
    def from_uploaded(cls, uploaded) -> IncomingFile:
        return cls(name=uploaded.name, chunks=uploaded.chunks, size=uploaded.size)

    @classmethod
    def from_path(cls, path: Path) -> IncomingFile:
        def chunks():
            with open(path, "rb") as handle:
                yield from iter(lambda: handle.read(1024 * 1024), b"")

        return cls(name=path.name, chunks=chunks, size=path.stat().st_size)


@dataclass
class UploadRequest:
    control: IncomingFile
    support_files: list[IncomingFile] = field(default_factory=list)
    name: str = ""
    description: str = ""
    requirements: IncomingFile | None = None


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
        raise PipelineRejected(f"The control file is {len(source) // 1024} KB; "
                               f"the limit is {MAX_CONTROL_BYTES // 1024} KB.")
    try:
        text = source.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PipelineRejected(f"{filename} is not UTF-8 text (byte {exc.start}). "
                               "Upload the Python source file.") from None
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
            inner = ast.Module(body=[*getattr(node, "body", []), *getattr(node, "orelse", []),
                                     *[n for h in getattr(node, "handlers", []) for n in h.body]], type_ignores=[])
            names |= _top_level_names(inner)
    return names


def _read_all(incoming: IncomingFile, limit: int) -> bytes:
    data = bytearray()
    for chunk in incoming.chunks():
        data.extend(chunk)
        if len(data) > limit:
            raise PipelineRejected(f"{incoming.name} is larger than {limit // 1024} KB.")
    return bytes(data)


def _write(path: Path, incoming: IncomingFile) -> None:
    with open(path, "wb") as out:
        for chunk in incoming.chunks():
            out.write(chunk)


class _CollectOutput:
    """Runner callbacks that keep the child's output, to quote it when get_params fails."""

    def __init__(self) -> None:
        self.text = ""

    def output(self, text: str) -> None:
        self.text += text

    def event(self, event: dict) -> None:
        pass

    def tick(self) -> bool:
        return False


def pipeline_traceback(log: str, code_dir: Path) -> str:
    """The frames of a child's traceback that are in the uploaded files, with their paths shortened.

    The platform's own frames (the runner) and the staging folder's location are of no use to the
    author and reveal server paths.
    """
    lines = log.strip().splitlines()
    start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("Traceback")), None)
    if start is None:
        return "\n".join(lines[-10:]).replace(f"{code_dir}/", "")
    kept, keep_next = [], False
    prefix = f'  File "{code_dir}/'
    for line in lines[start + 1:]:
        if line.startswith('  File "'):
            keep_next = line.startswith(prefix)
            if keep_next:
                kept.append(line.replace(f"{code_dir}/", ""))
        elif line.startswith("    "):
            if keep_next:
                kept.append(line)
        else:
            kept.append(line)
    return "\n".join(["Traceback (most recent call last):", *kept]) if kept else ""


def evaluate_params(control_path: Path, work_dir: Path, python: str | None = None,
                    extra_pythonpath: list[str] | None = None) -> dict:
    """Run get_params(run=True/False) in a child process; return {"train": spec, "run": spec}.

    ``python`` and ``extra_pythonpath``: a pipeline's own environment (see environments.py).
    """
    job = Job(
        kind="params",
        control_path=str(control_path),
        work_dir=str(work_dir),
        timeout_s=settings.MLOPEN_PARAMS_TIMEOUT,
        memory_mb=settings.MLOPEN_RUN_MEMORY_MB,
        max_log_bytes=64 * 1024,
        max_result_bytes=4 * 1024 * 1024,
        python=python,
        extra_pythonpath=list(extra_pythonpath or []),
    )
    collected = _CollectOutput()
    outcome = execute(job, collected)
    if outcome.status != "succeeded":
        if outcome.error and outcome.error.startswith("Run timed out"):
            raise PipelineRejected(
                f"Reading the control file's parameters took longer than {settings.MLOPEN_PARAMS_TIMEOUT} s "
                "(MLOPEN_PARAMS_TIMEOUT). mlopen imports the file and calls get_params at upload to build its "
                "forms, so module-level code and get_params must return quickly.")
        message = f"Loading the control file failed: {outcome.error}"
        trace = pipeline_traceback(collected.text, control_path.parent)
        if trace:
            message += f"\n{trace}"
        raise PipelineRejected(message)
    specs = outcome.params if isinstance(outcome.params, dict) else {}
    try:
        return {"train": params_mod.spec_from_runner(specs.get("train")),
                "run": params_mod.spec_from_runner(specs.get("run"))}
    except params_mod.SpecInvalid as exc:
        raise PipelineRejected(f"get_params declares a form mlopen cannot offer: {exc}") from None


def upload_pipeline(request: UploadRequest, user) -> PipelineVersion:
    """Validate an upload and store it as the next version of the pipeline with that name."""
    control_name = storage.safe_filename(request.control.name, fallback="control.py")
    if not control_name.endswith(".py"):
        raise PipelineRejected(f"The control file must be a Python file ending in .py (got {control_name!r}).")
    name = validate_name(request.name or Path(control_name).stem)
    # Before the files are read or get_params runs: a refusal for who you are comes first.
    check_may_publish(user, Pipeline.objects.filter(name=name).first(), name)
    source = _read_all(request.control, MAX_CONTROL_BYTES)
    docstring = check_control_source(control_name, source)

    support_files: list[IncomingFile] = []
    support_names: list[str] = []
    requirements = request.requirements
    for support in request.support_files:
        support_name = storage.safe_filename(support.name)
        if support_name == REQUIREMENTS_FILENAME:
            # requirements.txt uploaded beside the control file names the pipeline's environment.
            if requirements is not None:
                raise PipelineRejected("Two requirements.txt files were given; send one, as the requirements "
                                       "field or among the support files.", field="requirements")
            requirements = support
            continue
        if support_name == control_name or support_name in support_names:
            raise PipelineRejected(f"Two files are named {support_name!r}; "
                                   "every file of a pipeline needs its own name.",
                                   field="support_files")
        support_files.append(support)
        support_names.append(support_name)

    requirements_text = ""
    if requirements is not None:
        from mlopen.pipelines.environments import check_requirements

        requirements_text = check_requirements(_read_all(requirements, 256 * 1024))

    staging = settings.MLOPEN_WORK_DIR / "uploads" / uuid.uuid4().hex
    code_dir = staging / "code"
    code_dir.mkdir(parents=True)
    try:
        (code_dir / control_name).write_bytes(source)
        for support, support_name in zip(support_files, support_names):
            _write(code_dir / support_name, support)
        (staging / "work").mkdir()
        if requirements_text:
            # The control file may import what only its own environment has: its forms are read
            # there, once the environment is built (environments.build_for_version).
            specs = {"train": {}, "run": {}}
        else:
            specs = evaluate_params(code_dir / control_name, staging / "work")
        return _store_version(name, request.description or docstring or "", control_name, support_names,
                              code_dir, specs, requirements_text, user)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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


def _store_version(name, description, control_name, support_names, code_dir, specs, requirements, user):
    for attempt in range(3):
        try:
            with transaction.atomic():
                pipeline, created = Pipeline.objects.get_or_create(
                    name=name, defaults={"description": description, "created_by": user})
                if not created:
                    # Again, inside the transaction: the pipeline may have been made since the first check.
                    check_may_publish(user, pipeline, name)
                if not created and description:
                    pipeline.description = description
                    pipeline.save(update_fields=["description", "updated_at"])
                last = pipeline.versions.order_by("-number").values_list("number", flat=True).first() or 0
                number = last + 1
                folder = f"pipelines/{pipeline.pk}/v{number}"
                version = PipelineVersion.objects.create(
                    pipeline=pipeline, number=number, control_filename=control_name, support_files=support_names,
                    folder=folder, description=description, params_train=specs["train"], params_run=specs["run"],
                    requirements=requirements, created_by=user,
                )
                # Only once the number is ours: an upload that lost the race for it must not
                # overwrite the files of the version that won (stored files are write-once).
                for file_name in [control_name, *support_names]:
                    storage.copy_file_in(f"{folder}/{file_name}", code_dir / file_name)
                if requirements:
                    # In the same transaction: no run can see the version before it is "building"
                    # (and so refused until its environment is ready).
                    from mlopen.pipelines.environments import request_environment

                    request_environment(version)
            break
        except IntegrityError:
            # Another upload of the same name took this version number first: take the next one.
            if attempt == 2:
                raise
    return version
