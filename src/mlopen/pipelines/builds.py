"""An environment's build as a message: requested at upload (once committed), re-sent by the workers'
sweep when the broker lost it or its builder died. The build itself is runtimes.build_environment
(the runtime on this host, then environments.build_for_version), run by the task in pipelines.tasks."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mlopen.core import resend
from mlopen.pipelines import environments
from mlopen.pipelines.models import PipelineVersion, Runtime
from mlopen.pipelines.tasks import build_environment, build_runtime

log = logging.getLogger(__name__)


def request_environment(version: PipelineVersion) -> None:
    """Mark the version as building and enqueue its build, once the upload is committed.

    Even when the same requirements were built before, the build job runs: it reads the new control
    file's forms (get_params) inside the environment, which only then makes the version usable.
    It goes to the pipeline's own queue, so a pipeline served only by `--queues gpu` workers is
    still built. A build message the broker loses (or whose worker dies) is sent again by the
    workers' sweep (requeue_lost_builds, called from mlopen.runs.sweep).
    """
    env_hash = environments.requirements_hash(version.requirements, environments.version_runtime_digest(version))
    status = PipelineVersion.EnvStatus.BUILDING
    PipelineVersion.objects.filter(pk=version.pk).update(
        env_hash=env_hash, env_status=status, env_requested_at=timezone.now(), env_heartbeat_at=None
    )
    version.env_hash, version.env_status = env_hash, status
    queue = version.pipeline.queue or settings.MLOPEN_DEFAULT_QUEUE
    transaction.on_commit(lambda: send_build(version.pk, queue))


def send_build(version_id: int, queue: str) -> bool:
    """Send the build message; never raises. The version is committed by now, so a broker that is
    down must not fail the upload: the version stays "building" with env_requested_at cleared, and
    the next worker sweep sends it."""
    try:
        build_environment.apply_async(kwargs={"version_id": version_id}, queue=queue)
        return True
    except Exception as exc:  # noqa: BLE001 - whatever the broker raised, the build is recorded and will be sent
        log.warning(
            "the environment build of pipeline version %s could not be sent to the broker (%s: %s); a "
            "worker will send it once the broker is reachable",
            version_id,
            exc.__class__.__name__,
            exc,
        )
    try:
        PipelineVersion.objects.filter(pk=version_id, env_status=PipelineVersion.EnvStatus.BUILDING).update(
            env_requested_at=None
        )
    except Exception:  # logged; then it is re-sent after MLOPEN_REQUEUE_SECONDS instead
        log.exception("could not mark the build of pipeline version %s as not sent", version_id)
    return False


def requeue_lost_builds(horizons: dict, wait: float) -> list[int]:
    """Send again the build message of environments left "building" without a builder; return the
    versions' ids. ``horizons``: per queue, when a message sent to it must have been taken had the
    broker kept it (the workers' sweep works that out from the idle live workers).

    As for runs, with one more condition: no worker is building it (``env_heartbeat_at``, kept
    fresh by the building worker's heartbeat thread, is older than MLOPEN_HEARTBEAT_TIMEOUT), so a
    build whose worker died is re-sent as well as one whose message was lost. A duplicate build is
    harmless: environments.build_for_version skips a version no longer building, and builds of the
    same requirements on one host wait for each other and reuse the result.
    """
    silent = timezone.now() - timedelta(seconds=settings.MLOPEN_HEARTBEAT_TIMEOUT)
    candidates = PipelineVersion.objects.filter(
        resend.due("env_requested_at", "pipeline__queue", horizons),
        Q(env_heartbeat_at__isnull=True) | Q(env_heartbeat_at__lt=silent),
        env_status=PipelineVersion.EnvStatus.BUILDING,
    )
    rows = resend.take_due(candidates, "env_requested_at", ("pipeline__queue", "env_requested_at"))
    sent = resend.send(
        rows,
        lambda pk, queue: build_environment.apply_async(kwargs={"version_id": pk}, queue=queue),
        "environment build",
    )
    lost = [pk for pk, _queue, requested_at in rows if pk in sent and requested_at is not None]
    if lost:
        log.warning(
            "re-sent the environment build of %d pipeline version(s) left building with no worker on it: %s",
            len(lost),
            ", ".join(map(str, lost)),
        )
    unsent = [pk for pk, _queue, requested_at in rows if pk in sent and requested_at is None]
    if unsent:
        log.info(
            "sent the environment build of %d pipeline version(s) that could not be sent at upload: %s",
            len(unsent),
            ", ".join(map(str, unsent)),
        )
    return sorted(sent)


def request_runtime_build(runtime: Runtime, queue: str = "") -> None:
    """Have a worker build ``runtime`` unless it is ready; a failed build is tried again (the registry
    may be reachable now). Sent once the caller's transaction commits; a message the broker loses is
    sent again by the workers' sweep (requeue_lost_runtime_builds)."""
    if runtime.build_status == Runtime.Status.READY:
        return
    Runtime.objects.filter(pk=runtime.pk).exclude(build_status=Runtime.Status.READY).update(
        build_status=Runtime.Status.BUILDING, requested_at=timezone.now()
    )
    runtime.build_status = Runtime.Status.BUILDING
    queue = queue or settings.MLOPEN_DEFAULT_QUEUE

    def send() -> None:
        try:
            build_runtime.apply_async(kwargs={"runtime_id": runtime.pk}, queue=queue)
        except Exception as exc:  # noqa: BLE001 - whatever the broker raised, the sweep sends it later
            log.warning("the build of runtime %s could not be sent to the broker (%s)", runtime, exc)
            Runtime.objects.filter(pk=runtime.pk).update(requested_at=None)

    transaction.on_commit(send)


def requeue_lost_runtime_builds() -> list[int]:
    """Send again the build of runtimes left "building" whose message could not be sent, or was sent
    longer ago than a build may take (environments.BUILD_TIMEOUT_SECONDS): its message or builder
    was lost. A duplicate is harmless: builds of one lock on a host wait for each other."""
    stale = timezone.now() - timedelta(seconds=environments.BUILD_TIMEOUT_SECONDS)
    candidates = Runtime.objects.filter(
        Q(requested_at__isnull=True) | Q(requested_at__lt=stale), build_status=Runtime.Status.BUILDING
    )
    ids = list(candidates.values_list("pk", flat=True)[:20])
    if ids:
        Runtime.objects.filter(pk__in=ids).update(requested_at=timezone.now())
    sent = resend.send(
        [(pk, "") for pk in ids],
        lambda pk, queue: build_runtime.apply_async(kwargs={"runtime_id": pk}, queue=queue),
        "runtime build",
    )
    return sorted(sent)
