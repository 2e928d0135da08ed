"""Starting, cancelling and repeating runs. Web, API and CLI all call these; none of them run code.

A run is recorded first and handed to Celery only once that row is committed, so a worker never
looks for a run that does not exist yet (or was rolled back).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from mlopen.datasets.models import Dataset
from mlopen.pipelines import builds, runtimes
from mlopen.pipelines import params as params_mod
from mlopen.pipelines.environments import failure_summary
from mlopen.pipelines.models import Pipeline
from mlopen.runs import fairness, first_run, lifecycle
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


def resolve_pipeline(ref, user=None) -> Pipeline:
    """A pipeline by object, id or name; with ``user``, only one that user may see."""
    query = Pipeline.objects.all() if user is None else Pipeline.objects.visible_to(user)
    if isinstance(ref, Pipeline):
        if user is not None and not query.filter(pk=ref.pk).exists():
            raise RunRefused(f"There is no pipeline {ref.pk} you can use.", {"pipeline": f"Unknown pipeline {ref.pk}."})
        return ref
    if isinstance(ref, bool) or ref is None or ref == "":
        raise RunRefused("Name the pipeline to run by its id or name.", {"pipeline": "This field is required."})
    pipeline = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        pipeline = query.filter(pk=int(ref)).first()
    if pipeline is None and isinstance(ref, str):
        pipeline = query.filter(name=ref).first()
    if pipeline is None:
        raise RunRefused(f"There is no pipeline {ref!r}.", {"pipeline": f"Unknown pipeline {ref!r}."})
    return pipeline


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
    dataset = Dataset.objects.visible_to(user).filter(pk=dataset_id).first()
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
    version = pipeline.latest_version
    if version is None:
        raise RunRefused(f"Pipeline {pipeline.name} has no uploaded version.", {"pipeline": "No version uploaded."})
    if not version.is_usable:
        raise _environment_not_usable(pipeline, version)
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
    # Read before the write transaction, and only the status: on SQLite that transaction holds the
    # database's one write lock, and the runtime's row carries its long lock text and build log.
    runtime_failed = runtimes.build_failed(version)
    with transaction.atomic():
        if connection.features.has_select_for_update:
            # Two submits of one user at once must not both take the last place (SQLite's
            # IMMEDIATE transactions run one at a time already).
            list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))
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
        )
        if runtime_failed and version.runtime is not None:
            # Built again (the registry may be reachable now): the run waits for it, queued.
            builds.request_runtime_build(version.runtime, run.queue)
        transaction.on_commit(lambda: enqueue(run))
    return run


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


def rerun(user, run: Run) -> Run:
    """Start a new run of the same pipeline, kind, input and params (the user's explicit retry).

    The new run is ``user``'s own. A colleague may re-run a run shared with them only when they
    can also see its input: sharing a run does not share the dataset it read.
    """
    if run.input_id is not None and not Dataset.objects.visible_to(user).filter(pk=run.input_id).exists():
        raise RunRefused(
            f"Run {run.pk} cannot be repeated by you: its input dataset is not shared with you. "
            "Ask its owner to share the dataset, or start a new run with your own.",
            {"input": "Not shared with you."},
            status=403,
        )
    new = submit_run(
        user,
        RunRequest(
            pipeline=run.pipeline,
            kind=run.kind,
            input=run.input_id,
            params=run.params,
            timeout_seconds=run.timeout_seconds,
        ),
    )
    Run.objects.filter(pk=new.pk).update(retry_of=run)
    new.retry_of = run
    return new
