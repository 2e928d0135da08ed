"""Starting, cancelling and repeating runs. Web, API and CLI all call these; none of them run code.

A run is recorded first and handed to Celery only once that row is committed, so a worker never
looks for a run that does not exist yet (or was rolled back).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from mlopen.core import prepared
from mlopen.datasets import schemas
from mlopen.datasets.models import Dataset
from mlopen.pipelines import builds, registry, runtimes
from mlopen.pipelines import params as params_mod
from mlopen.pipelines.control import PipelineRejected
from mlopen.pipelines.environments import failure_summary
from mlopen.pipelines.models import Pipeline, PipelineVersion, TrainedModel
from mlopen.runs import fairness, first_run, labels, lifecycle, model_checks
from mlopen.runs.models import Run
from mlopen.runs.tasks import execute_run

log = logging.getLogger(__name__)


class RunRefused(ValueError):
    """A run request that cannot be accepted. ``errors`` maps field names to messages."""

    def __init__(
        self, message: str, errors: dict[str, str] | None = None, status: int = 400, retry_after: int | None = None
    ):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}
        self.status = status
        self.retry_after = retry_after  # seconds, for a 429: when trying again may succeed


class TooManyQueued(RunRefused):
    """429: the user has as many runs waiting as they may (MLOPEN_USER_MAX_QUEUED or their own limit)."""

    def __init__(self, queued: int, limit: int):
        super().__init__(
            f"You have {queued} run{'' if queued == 1 else 's'} waiting, the most you may have queued at once "
            f"({limit}, MLOPEN_USER_MAX_QUEUED or the limit an administrator set for you). Nothing was queued; "
            f"try again once some of them have started (in about {fairness.QUEUE_FULL_RETRY_SECONDS} s), "
            "or cancel some.",
            {"queued": f"At most {limit} runs may wait at once."},
            status=429,
            retry_after=fairness.QUEUE_FULL_RETRY_SECONDS,
        )


class RunNotCancellable(RunRefused):
    def __init__(self, run: Run):
        super().__init__(
            f"Run {run.pk} already {run.status}; only queued or running runs can be cancelled.", status=409
        )


@dataclass
class RunRequest:
    pipeline: object  # Pipeline, id, or name
    kind: str = Run.Kind.RUN
    input: object = None  # Dataset, id, or None
    params: dict | None = None
    timeout_seconds: object = None
    # A model by id or alias (runs only); empty: the production alias's, else the newest.
    model: object = None
    # A version by number; empty: the latest.
    version: object = None
    # The run this one repeats (a rerun). Written with the row, never after it is sent: a second
    # write to a sent run could hold its row lock just as a worker looks for it.
    retry_of: Run | None = None


def resolve_pipeline(ref, user=None) -> Pipeline:
    """A pipeline by object, id or name; with ``user``, only one that user may see."""
    if isinstance(ref, Pipeline):
        if user is not None and not Pipeline.objects.visible_to(user).filter(pk=ref.pk).exists():
            raise RunRefused(f"There is no pipeline {ref.pk} you can use.", {"pipeline": f"Unknown pipeline {ref.pk}."})
        return ref
    if isinstance(ref, bool) or ref is None or ref == "":
        raise RunRefused("Name the pipeline to run by its id or name.", {"pipeline": "This field is required."})
    pipeline = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit()):
        pipeline = _visible_match(user, Pipeline, "pk", int(ref))
    if pipeline is None and isinstance(ref, str):
        pipeline = _visible_match(user, Pipeline, "name", ref)
    if pipeline is None:
        raise RunRefused(f"There is no pipeline {ref!r}.", {"pipeline": f"Unknown pipeline {ref!r}."})
    return pipeline


def _visible_match(user, model, field: str, value):
    """The one pipeline or dataset (``model``) that ``user`` may see (everyone's, with no user) whose
    unique ``field`` is ``value``, or None. Every submit asks this of its pipeline and dataset, so for
    a logged-in user the query is compiled once per model, field and kind of user (mlopen.core.prepared)."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "pk", None):
        visible = model.objects.all() if user is None else model.objects.visible_to(user)
        return prepared.unique_match(visible.filter(**{field: value}))
    if field == "pk" and not (-(2**63) <= value < 2**63):
        return None  # no such id; the ORM drops an out-of-range lookup, a bound value would overflow
    superuser = bool(user.is_superuser)
    statement = _VISIBLE_MATCH.get((model, field, superuser))
    if statement is None:
        # An admin sees every row: their query has no user in it to stand in for.
        stand_ins = {"value": _VALUE_STAND_INS[field], **({} if superuser else {"user_id": _USER_STAND_IN})}
        statement = _VISIBLE_MATCH.setdefault(
            (model, field, superuser),
            prepared.Compiled(functools.partial(_visible_query, model, field, superuser), **stand_ins),
        )
    return statement.first(user_id=user.pk, value=value)


_USER_STAND_IN = -2_000_000_123
_VALUE_STAND_INS = {"pk": -2_000_000_124, "name": "\x00mlopen-name-stand-in\x00"}
_VISIBLE_MATCH: dict[tuple, prepared.Compiled] = {}


def _visible_query(model, field: str, superuser: bool, value, user_id: int = 0):
    # The statement is kept per kind of user, so visible_to may tell users apart by
    # is_authenticated, is_superuser and their id only (the id reaches SQL: groups, ownership).
    stand_in = get_user_model()(pk=user_id, is_superuser=superuser)
    return model.objects.visible_to(stand_in).filter(**{field: value}).order_by()[:1]


def _resolve_dataset(user, ref, field: str) -> Dataset | None:
    if ref is None or ref == "":
        return None
    if isinstance(ref, Dataset):
        dataset_id = ref.pk
    else:
        try:
            dataset_id = params_mod._to_dataset_id(ref)
        except ValueError as exc:
            raise RunRefused(str(exc), {field: str(exc)}) from None
    dataset = _visible_match(user, Dataset, "pk", dataset_id)
    if dataset is None:
        raise RunRefused(f"There is no dataset {dataset_id} you can use.", {field: f"Unknown dataset {dataset_id}."})
    return dataset


def _effective_timeout(pipeline: Pipeline, requested) -> int:
    ceiling = pipeline.timeout_seconds or settings.MLOPEN_RUN_TIMEOUT
    if requested in (None, ""):
        return ceiling
    try:
        value = params_mod._to_int(requested)
    except ValueError as exc:
        raise RunRefused(str(exc), {"timeout": str(exc)}) from None
    if value <= 0:
        raise RunRefused("timeout must be a positive number of seconds.", {"timeout": "Must be at least 1 second."})
    return min(value, ceiling)


def _environment_not_usable(pipeline: Pipeline, version) -> RunRefused:
    name = f"{pipeline.name} v{version.number}"
    if version.env_status == version.EnvStatus.FAILED:
        return RunRefused(
            f"{name} cannot run: building its environment from requirements.txt failed: "
            f"{failure_summary(version.env_log)} Upload a new version with corrected requirements.",
            {"pipeline": "Its environment failed to build."},
            status=409,
        )
    return RunRefused(
        f"{name} cannot run yet: its environment is still being built from requirements.txt; "
        "try again when it is ready.",
        {"pipeline": "Its environment is being built."},
        status=409,
    )


def submit_run(user, request: RunRequest) -> Run:
    """Validate a run request, record the run as queued and enqueue it once committed."""
    if request.kind not in Run.Kind.values:
        raise RunRefused(f"kind must be 'train' or 'run', not {request.kind!r}.", {"kind": "Use 'train' or 'run'."})
    pipeline = resolve_pipeline(request.pipeline, user)
    version = _resolve_version(pipeline, request.version)
    if not version.is_usable:
        raise _environment_not_usable(pipeline, version)
    model, alias = _resolve_model(user, pipeline, request)
    dataset = _resolve_dataset(user, request.input, "input")
    if dataset is None and pipeline.input_required:
        missing = first_run.input_missing_message(pipeline)
        raise RunRefused(missing, {"input": missing})
    spec = version.params_for(request.kind)
    try:
        values = params_mod.convert(spec, request.params)
    except params_mod.ParamsInvalid as exc:
        raise RunRefused("Some parameters are not valid.", {f"params.{k}": v for k, v in exc.errors.items()}) from None
    for name in params_mod.file_param_names(spec):
        if values.get(name) is not None:
            try:
                chosen = _resolve_dataset(user, values[name], f"params.{name}")
            except RunRefused as exc:
                raise RunRefused(exc.message, exc.errors) from None
            values[name] = chosen.pk if chosen else None
    timeout = _effective_timeout(pipeline, request.timeout_seconds)
    warnings = model_checks.input_warnings(model, dataset) if request.kind == Run.Kind.RUN else []
    # Read before the write transaction, and only the status: on SQLite that transaction holds the
    # database's one write lock, and the runtime's row carries its long lock text and build log.
    runtime_failed = runtimes.build_failed(version)
    with transaction.atomic():
        fairness.lock_queued_limit(user.pk)
        full = fairness.over_queued_limit(user.pk)
        if full is not None:
            raise TooManyQueued(*full)
        run = Run.objects.create(
            pipeline=pipeline,
            version=version,
            kind=request.kind,
            owner=user,
            input=dataset,
            input_name=dataset.name if dataset else "",
            params=values,
            timeout_seconds=timeout,
            queue=pipeline.queue or settings.MLOPEN_DEFAULT_QUEUE,
            # The model it will use, as far as is known now: a named one is kept; otherwise the
            # worker's claim chooses again (a training that ends meanwhile gives the newer model).
            trained_model=model,
            model_requested=_requested(request.model),
            version_requested=version.number if request.version not in (None, "") else None,
            model_alias=alias,
            warnings=warnings,
            retry_of=request.retry_of,
        )
        if runtime_failed and version.runtime is not None:
            # Built again (the registry may be reachable now): the run waits for it, queued.
            builds.request_runtime_build(version.runtime, run.queue)
        transaction.on_commit(lambda: enqueue(run))
    # A new run has no tags: said here, so that its detail (the POST's answer) does not ask.
    labels.known_untagged(run)
    return run


def _resolve_version(pipeline: Pipeline, ref) -> PipelineVersion:
    """The version a run names by number, else the latest."""
    if ref in (None, ""):
        version = pipeline.latest_version
        if version is None:
            raise RunRefused(f"Pipeline {pipeline.name} has no uploaded version.", {"pipeline": "No version uploaded."})
        return version
    try:
        number = params_mod._to_int(ref)
    except ValueError:
        number = None
    version = pipeline.versions.filter(number=number).first() if number is not None and 0 < number < 2**31 else None
    if version is None:
        numbers = list(pipeline.versions.order_by("number").values_list("number", flat=True))
        known = f"it has versions {', '.join(map(str, numbers))}" if numbers else "it has no version"
        message = f"Pipeline {pipeline.name} has no version {str(ref)[:20]!r}; {known}."
        raise RunRefused(message, {"version": message})
    return version


def _resolve_model(user, pipeline: Pipeline, request: RunRequest) -> tuple[TrainedModel | None, str]:
    """The model a run will use and the alias it came through (see mlopen.pipelines.registry)."""
    if request.model in (None, ""):
        return registry.default_model(pipeline) if request.kind == Run.Kind.RUN else (None, "")
    if request.kind != Run.Kind.RUN:
        message = "A training makes a new model; name a model only for a run."
        raise RunRefused(message, {"model": message})
    try:
        return registry.resolve_model(pipeline, request.model, user)
    except PipelineRejected as exc:
        raise RunRefused(exc.message, {"model": exc.message}) from None


def _requested(ref) -> str:
    return "" if ref in (None, "") else str(ref).strip()[:64]


def preview_warnings(user, pipeline: Pipeline, model_ref, input_ref) -> tuple[list[dict], TrainedModel | None, bool]:
    """For the run form, before a run starts: the warnings a run of ``pipeline`` on dataset
    ``input_ref`` with model ``model_ref`` (empty: the default) would get, that model, and whether
    there was anything to compare (a model trained on a table, an input that is one). A choice that
    is not valid gives no warning (the run itself is refused with its reason)."""
    try:
        model, _alias = _resolve_model(user, pipeline, RunRequest(pipeline=pipeline, model=model_ref or None))
        dataset = _resolve_dataset(user, input_ref or None, "input")
    except RunRefused:
        return [], None, False
    compared = bool(model and model.input_schema and dataset and schemas.schema_of(dataset))
    return model_checks.input_warnings(model, dataset), model, compared


def queue_position(run: Run) -> int | None:
    """Where a queued run stands on its queue, users taking turns (fairness.queue_position); 1 is next."""
    return fairness.queue_position(run)


def release_waiting_runs(runtime_id: int) -> list[int]:
    """Send the messages of queued runs that waited for this runtime's build (now ready or failed:
    the worker then runs them, or fails them with the build's error)."""
    waiting = list(
        Run.objects.filter(status=Run.Status.QUEUED, version__runtime_id=runtime_id).values_list("pk", "queue")
    )
    for pk, queue in waiting:
        enqueue(Run(pk=pk, queue=queue))
    return [pk for pk, _queue in waiting]


def enqueue(run: Run) -> bool:
    """Send "execute run N" to the run's queue; never raises.

    Called once the row is committed, so a broker that is down must not turn the request into a
    500 for a run that exists: the run stays queued with ``enqueued_at`` cleared, and the next
    worker sweep sends it (sweep.requeue_lost_messages). ``enqueued_at`` itself was set when the
    row was created, so a message that is sent costs no second write.
    """
    try:
        execute_run.apply_async(kwargs={"run_id": run.pk}, queue=run.queue or settings.MLOPEN_DEFAULT_QUEUE)
        return True
    except Exception as exc:  # noqa: BLE001 - whatever the broker raised, the run is recorded and will be sent
        log.warning(
            "run %s is queued but could not be sent to the broker (%s: %s); a worker will send it "
            "once the broker is reachable",
            run.pk,
            exc.__class__.__name__,
            exc,
        )
    try:
        Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(enqueued_at=None)
    except Exception:  # logged; then it is re-sent after MLOPEN_REQUEUE_SECONDS instead
        log.exception("could not mark run %s as not sent", run.pk)
    return False


def cancel_run(run: Run) -> Run:
    """Cancel a queued run outright, or ask the worker holding a running one to kill it."""
    if lifecycle.cancel_queued(run) or lifecycle.request_cancel(run):
        run.refresh_from_db()
        return run
    run.refresh_from_db()
    raise RunNotCancellable(run)


RERUN_FIELDS = ("pipeline", "version", "model", "input", "params", "timeout_seconds")


def rerun(user, run: Run, changes: dict | None = None) -> Run:
    """Start a new run asking what ``run`` asked (pipeline, kind, version, model, input, params),
    with ``changes`` to any of those (``RERUN_FIELDS``), checked as a new run is.

    What it asked, not what it got: a run that named no model or version gets the current
    production model and latest version again. ``params`` in ``changes`` are merged into the old
    ones (change one value, keep the rest); old values the chosen version no longer takes are left
    out. The new run is ``user``'s own. A colleague may re-run a run shared with them only when
    they can also see its input: sharing a run does not share the dataset it read.
    """
    changes = changes or {}
    if (
        "input" not in changes
        and run.input_id is not None
        and not Dataset.objects.visible_to(user).filter(pk=run.input_id).exists()
    ):
        raise RunRefused(
            f"Run {run.pk} cannot be repeated by you: its input dataset is not shared with you. "
            "Ask its owner to share the dataset, or start a new run with your own.",
            {"input": "Not shared with you."},
            status=403,
        )
    request = RunRequest(
        pipeline=run.pipeline,
        kind=run.kind,
        input=run.input_id,
        params=dict(run.params),
        timeout_seconds=run.timeout_seconds,
        model=run.model_requested or None,
        version=run.version_requested,
        retry_of=run,
    )
    if "pipeline" in changes:
        # Another pipeline: its own defaults, none of the old run's choices that belong to the old one.
        request.pipeline, request.params, request.model, request.version = changes["pipeline"], {}, None, None
    for field in ("version", "model", "input", "timeout_seconds"):
        if field in changes:
            setattr(request, field, changes[field])
    if "params" in changes:
        if not isinstance(changes["params"], dict):
            raise RunRefused("params must be an object of parameter values.", {"params": "Send an object."})
        request.params = {**(request.params or {}), **changes["params"]}
    if "pipeline" not in changes and request.params:
        request.params = _params_taken(user, request, set(changes.get("params") or {}))
    return submit_run(user, request)


def _params_taken(user, request: RunRequest, given: set) -> dict:
    """The old run's parameter values the version the new run will use still takes (the ones given
    with the rerun are all kept, so a wrong name there is refused as usual)."""
    pipeline = resolve_pipeline(request.pipeline, user)
    version = _resolve_version(pipeline, request.version)
    known = {spec["name"] for spec in version.params_for(request.kind)}
    return {name: value for name, value in (request.params or {}).items() if name in known or name in given}
