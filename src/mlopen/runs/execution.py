"""Where a run is executed: claim it, hand it to the runner, record what happened.

This is the one place that turns a Run row into a runner Job and an Outcome back into rows and
stored files. The Celery task only calls :func:`execute_run`.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db.models import Max
from django.utils import timezone

from mlopen.core import prepared, storage
from mlopen.datasets.models import Dataset
from mlopen.pipelines import params as params_mod
from mlopen.pipelines import runtimes
from mlopen.pipelines.environments import failure_summary
from mlopen.pipelines.models import Runtime, TrainedModel
from mlopen.runs import lifecycle, lineage, logs, model_checks, results, warm, workers
from mlopen.runs.models import Run, RunMetric
from mlopen_runner import Job
from mlopen_runner.images import private_images_path
from mlopen_runner.job import disk_full_message, is_disk_full
from mlopen_runner.watching import private_model_path

log = logging.getLogger(__name__)

# How often a running run's log, progress and heartbeat are written to its row, and how often
# the worker looks for a cancel request. The issue asks for the log to grow at least every second.
FLUSH_SECONDS = 0.5


# The first query of every message: compiled once (built by the ORM it cost ~0.3 ms a run).
_QUEUE_OF_RUN = prepared.CompiledRows(
    lambda run_id: Run.objects.filter(pk=run_id).values_list("queue")[:1], run_id=-2_000_000_301
)


def execute_run(run_id: int, worker_name: str) -> str:
    """Run the next queued run of ``run_id``'s queue to completion on this worker; return its final
    status (or why nothing was taken).

    The message names a run, but it stands for "a run of this queue is waiting": the worker takes
    the fairest one (lifecycle.claim_next, users in turn), which is ``run_id`` itself only when it
    is that user's turn. Each queued run sent one message, so every run is taken in the end.
    """
    try:
        # Tried again on a fresh connection: a kept one the database ended a moment ago can pass
        # the cheap check before a task (mlopen.core.postgresql) and fail here.
        found = lifecycle.retry_transient(lambda: _QUEUE_OF_RUN.rows(run_id=run_id))
    except (OperationalError, InterfaceError) as exc:
        log.error("run %s not claimed: the database is unavailable (%s)", run_id, exc)
        return "skipped (database unavailable)"
    if not found:
        # Deleted with its message in flight; the message stood for it alone.
        log.info("run %s not claimed: it no longer exists", run_id)
        return "skipped (missing)"
    ((queue,),) = found
    try:
        run = lifecycle.claim_next(queue or settings.MLOPEN_DEFAULT_QUEUE, worker_name, _sandbox_kind())
    except (OperationalError, InterfaceError) as exc:
        # Nothing was taken (the claim is one transaction): the run stays queued and the sweep
        # sends its message again once it is old enough.
        log.error("no run of queue %r claimed: the database is unavailable (%s)", queue, exc)
        return "skipped (database unavailable)"
    if run is None:
        log.info("run %s not claimed: no run of queue %r to take now (taken, finished or waiting)", run_id, queue)
        return "skipped (nothing to take)"
    waiting = runtimes.waiting_on(run.version)
    if waiting is not None and waiting.build_status == Runtime.Status.BUILDING:
        # Its build started again between the choice and the claim: back to wait for it.
        return _put_back(run, worker_name, f"runtime {waiting.name} is being built again")
    # The worker's own row learns what it runs from its heartbeat thread, off this path.
    workers.set_current_run(worker_name, run.pk, run.timeout_seconds)
    work_dir = settings.MLOPEN_WORK_DIR / "runs" / str(run.pk)
    recorder = RunRecorder(run)
    try:
        if waiting is not None:  # its build failed
            raise RuntimeError(
                f"runtime {waiting.name} could not be built: {failure_summary(waiting.build_log)} "
                "(it is built again when a new run of it is started)"
            )
        try:
            job = build_job(run, work_dir, recorder)
        except (OperationalError, InterfaceError) as exc:
            return _put_back(run, worker_name, f"the database connection was lost before the pipeline started ({exc})")
        if workers.shutdown_due():
            return _put_back(run, worker_name, f"worker {worker_name} was shutting down before the pipeline started")
        outcome = warm.execute(run, job, recorder)  # a warm process or a fresh child
        return finish(run, outcome, recorder)
    except Exception as exc:  # noqa: BLE001 - a broken run must never take the worker down
        log.exception("run %s failed inside the platform", run.pk)
        if is_disk_full(exc):  # said plainly: the worker's disk, not "[Errno 28]" from somewhere
            error = disk_full_message(getattr(exc, "filename", None) or str(work_dir))
        else:
            error = f"mlopen could not execute this run: {exc}"
        _finish_row(run, Run.Status.FAILED, error=error, **recorder.final_fields())
        return Run.Status.FAILED
    finally:
        workers.set_current_run(worker_name, None)  # even when the final status could not be written
        shutil.rmtree(work_dir, ignore_errors=True)
        Path(private_model_path(str(work_dir))).unlink(missing_ok=True)  # stored by now, or not wanted
        shutil.rmtree(private_images_path(str(work_dir)), ignore_errors=True)  # likewise


def _put_back(run: Run, worker_name: str, reason: str) -> str:
    log.warning("run %s: %s; putting it back in the queue", run.pk, reason)
    try:
        requeued = lifecycle.put_back(run.pk, worker_name, reason[0].upper() + reason[1:])
    except (OperationalError, InterfaceError):
        # The database stayed away: the run stays running without a worker vouching for it, and the
        # sweep fails it as lost once it can (the rare case where a blip outlasts CLAIM_PATIENCE).
        log.exception("run %s could not be put back in the queue", run.pk)
        return Run.Status.RUNNING
    return Run.Status.QUEUED if requeued else "skipped (no longer running)"


def _sandbox_kind() -> str:
    return workers.sandbox_of_this_process()["kind"]


def _file_ref(dataset: Dataset) -> dict:
    return {"path": str(storage.local_path(dataset.file)), "name": dataset.filename}


def build_job(run: Run, work_dir: Path, recorder: RunRecorder | None = None) -> Job:
    # A folder left by an earlier attempt goes; the runner creates the folder when it needs one
    # (a warm run does its work in its warm process's own folder).
    shutil.rmtree(work_dir, ignore_errors=True)
    version = run.version
    job_params = dict(run.params)
    files = {}
    spec = version.params_for(run.kind)
    # File parameters reach the runner only as datasets this run was allowed to use (checked when
    # it was started); whatever else their value is, it stays a plain value.
    for name in params_mod.file_param_names(spec):
        dataset_id = job_params.pop(name, None)
        if dataset_id is None:
            job_params[name] = None
            continue
        dataset = Dataset.objects.filter(pk=dataset_id).first() if isinstance(dataset_id, int) else None
        if dataset is None:
            raise ValueError(f"the dataset chosen for parameter {name!r} was deleted")
        files[name] = _file_ref(dataset)
    model_path = None
    if run.kind == Run.Kind.RUN and run.trained_model is not None:  # given by claim()
        model_path = str(storage.local_path(run.trained_model.artifact))
        if run.model_requested == "":
            # The claim may have chosen another model than the one shown when the run was
            # submitted (a training or a promotion since): its warnings are about that one.
            warnings = model_checks.input_warnings(run.trained_model, run.input)
            if warnings != run.warnings:
                Run.objects.filter(pk=run.pk).update(warnings=warnings)
    pipeline = run.pipeline
    python, extra_path, environment = runtimes.interpreter_for(version)
    if recorder is not None:
        # Written with the run's first flush or its final write, so a run that fails or hangs still
        # says what it ran on, without a write of its own on every run's path.
        recorder.environment = environment
    else:
        Run.objects.filter(pk=run.pk).update(environment=environment)
    return Job(
        kind=run.kind,
        control_path=str(storage.local_folder(version.folder) / version.control_filename),  # with its support files
        work_dir=str(work_dir),
        input=_file_ref(run.input) if run.input else None,
        params=job_params,
        model_path=model_path,
        timeout_s=run.timeout_seconds or pipeline.timeout_seconds or settings.MLOPEN_RUN_TIMEOUT,
        memory_mb=pipeline.memory_mb or settings.MLOPEN_RUN_MEMORY_MB,
        max_log_bytes=settings.MLOPEN_MAX_LOG_KB * 1024,
        max_result_bytes=settings.MLOPEN_MAX_RESULT_MB * 1024 * 1024,
        python=python,
        allow_network=pipeline.allow_network,
        extra_pythonpath=extra_path,
        files=files,
        disk_mb=settings.MLOPEN_RUN_DISK_MB,
        max_processes=settings.MLOPEN_RUN_MAX_PROCESSES,
        max_images=settings.MLOPEN_MAX_IMAGES,
        max_image_bytes=settings.MLOPEN_MAX_IMAGE_MB * 1024 * 1024,
    )


class RunRecorder:
    """Runner callbacks that write a running run's log, progress and metrics to its row."""

    def __init__(self, run: Run):
        self.run_id = run.pk
        # The log goes out in chunks: what is not written yet, and where it will start. A run
        # claimed again (put back once) goes on after what its log already holds.
        start = logs.next_chunk(run.pk, "") if run.attempt > 1 else logs.Chunk(run.pk, 0, 0, "")
        self.log_seq, self.log_written = start.seq, start.offset
        self.log_pending = ""
        self.log_at_line_start = True
        self.progress: tuple[float | None, str] | None = None
        self.metrics: list[RunMetric] = []
        self.dirty = False
        self.last_flush = time.monotonic()  # claim() just wrote the heartbeat: no flush at the very start
        self.cancelled = False
        self.stopped_by_shutdown = False
        self.environment: dict | None = None  # what the run runs on, written with the next write
        self.metric_points = 0
        self.non_finite_noted: set[str] = set()

    def output(self, text: str) -> None:
        if not text:
            return
        self.log_pending += db_text(text)
        self.log_at_line_start = text.endswith("\n")
        self.dirty = True

    def note(self, text: str) -> None:
        """A line from mlopen itself in the run's log."""
        self.output(("" if self.log_at_line_start else "\n") + f"mlopen: {text}\n")

    def log_chunk(self) -> logs.Chunk | None:
        """The log's text not written yet, as the next chunk (None when there is none)."""
        if not self.log_pending:
            return None
        return logs.Chunk(self.run_id, self.log_seq, self.log_written, self.log_pending)

    def log_chunk_written(self, chunk: logs.Chunk | None) -> None:
        if chunk is not None:
            self.log_pending = self.log_pending[len(chunk.text) :]
            self.log_seq += 1
            self.log_written += len(chunk.text)

    def event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "progress":
            self.progress = (event.get("fraction"), db_text(str(event.get("message") or "")[:500]))
            self.dirty = True
        elif kind == "metric":
            self._metric(db_text(str(event.get("name", "metric"))[:100]), event.get("value"), event.get("step"))

    def _metric(self, name: str, raw_value, step) -> None:
        self.metric_points += 1
        cap = settings.MLOPEN_MAX_METRIC_POINTS
        if self.metric_points > cap:
            if self.metric_points == cap + 1:
                self.note(
                    f"this run logged more than {cap} metric points; later ones are not kept "
                    "(MLOPEN_MAX_METRIC_POINTS)."
                )
            return
        value = None
        if raw_value is not None:
            try:
                value = float(raw_value)
            except (TypeError, ValueError):
                return
        if value is None or not math.isfinite(value):
            value = None  # the chart shows a gap, the API null: a loss that went NaN is worth seeing
            if name not in self.non_finite_noted:
                self.non_finite_noted.add(name)
                self.note(
                    f"metric {name!r} got a value that is not a finite number (NaN or infinity) at step "
                    f"{step}; it is recorded as empty."
                )
        self.metrics.append(
            RunMetric(run_id=self.run_id, name=name, value=value, step=step if isinstance(step, int) else None)
        )
        self.dirty = True

    def tick(self) -> bool:
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()
        if not self.cancelled and workers.shutdown_due():
            # The worker was asked to stop and the run outlived MLOPEN_SHUTDOWN_GRACE_SECONDS: stop
            # it like a cancel, so its log so far is kept and the run ends recorded, not lost.
            self.stopped_by_shutdown = True
            self.cancelled = True
        return self.cancelled

    def flush(self, force: bool = False) -> None:
        """Write what changed and the heartbeat; learn whether the user asked to cancel.

        A database error never reaches the pipeline: the log and metrics not written stay here and
        go with the next flush (or the final write).
        """
        self.last_flush = time.monotonic()
        fields: dict[str, object] = {}
        if self.environment is not None:
            fields["environment"] = self.environment
        chunk = None
        if self.dirty or force:
            chunk = self.log_chunk()
            if self.progress is not None:
                fields["progress_fraction"], fields["progress_message"] = self.progress
        try:
            still_running = lifecycle.record_progress(self.run_id, self.metrics, log_chunk=chunk, **fields)
            cancel_requested = still_running and Run.objects.filter(pk=self.run_id, cancel_requested=True).exists()
        except (DatabaseError, InterfaceError) as exc:
            log.warning(
                "run %s: could not write its log and progress (%s: %s); trying again at the next flush",
                self.run_id,
                exc.__class__.__name__,
                exc,
            )
            return
        self.metrics = []
        self.dirty = False
        self.environment = None  # written
        self.log_chunk_written(chunk)
        # A run whose row was deleted (with its pipeline, say) or already failed as lost has nobody
        # left to report to: stop it as if cancelled, so the worker is free for the next one.
        self.cancelled = not still_running or cancel_requested

    def final_fields(self) -> dict:
        """The log, progress and metrics not yet written, for the run's final write (one transaction)."""
        fields: dict[str, object] = {
            "log_chunk": self.log_chunk(),
            "heartbeat_at": timezone.now(),
            "metrics": self.metrics,
        }
        if self.environment is not None:
            fields["environment"] = self.environment
        if self.progress is not None:
            fields["progress_fraction"], fields["progress_message"] = self.progress
        return fields


def finish(run: Run, outcome, recorder: RunRecorder) -> str:
    # The log and progress go into the same UPDATE as the final status: one statement, not three.
    recorded = recorder.final_fields()
    if outcome.status == "cancelled" and recorder.stopped_by_shutdown:
        grace = settings.MLOPEN_SHUTDOWN_GRACE_SECONDS
        recorder.note(f"the worker shut down; the run was stopped after the {grace:g} s it had to finish.")
        recorded = recorder.final_fields()
        _finish_row(
            run,
            Run.Status.CANCELLED,
            error=f"The worker running this run shut down before it finished (it waited {grace:g} s, "
            "MLOPEN_SHUTDOWN_GRACE_SECONDS); its log so far is kept. Use 'Run again' to run it again.",
            outcome=outcome,
            **recorded,
        )
        return Run.Status.CANCELLED
    if outcome.status == "cancelled":
        _finish_row(
            run, Run.Status.CANCELLED, error="Cancelled by the user while running.", outcome=outcome, **recorded
        )
        return Run.Status.CANCELLED
    if outcome.status != "succeeded":
        _finish_row(run, Run.Status.FAILED, error=outcome.error or "The pipeline failed.", outcome=outcome, **recorded)
        return Run.Status.FAILED
    extra: dict = {}
    try:
        if run.kind == Run.Kind.TRAIN:
            _store_trained_model(run, outcome, recorder)
        elif outcome.result is not None:
            kept = _keep_result(run.pk, outcome.result, getattr(outcome, "images", None) or [])
            extra.update(kept.run_fields(), stored_result=kept.in_database)
    except results.ResultInvalid as exc:
        _finish_row(run, Run.Status.FAILED, error=str(exc), outcome=outcome, **recorded)
        return Run.Status.FAILED
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        what = "the trained model" if run.kind == Run.Kind.TRAIN else "the result"
        error = f"The run finished but {what} could not be stored: {disk_full_message(str(storage.local_root()))}"
        _finish_row(run, Run.Status.FAILED, error=error, outcome=outcome, **recorded)
        return Run.Status.FAILED
    _finish_row(run, Run.Status.SUCCEEDED, outcome=outcome, **recorded, **extra)
    return Run.Status.SUCCEEDED


def _keep_result(run_id: int, result: dict, images: list[dict]) -> results.Kept:
    """results.keep, leaving no files behind when it fails: half a result is no result."""
    try:
        return results.keep(run_id, result, images)
    except BaseException:
        storage.delete_tree(results.folder_of(run_id))
        raise


def _store_trained_model(run: Run, outcome, recorder: RunRecorder | None = None) -> None:
    if not outcome.model_path:
        return  # a pipeline that needs no training saves nothing
    # outcome.model_path is the runner's own copy, outside anything the pipeline could write.
    manifest = getattr(outcome, "model_manifest", None) or {}
    # How it was trained, read before the write transaction (the input's schema reads its file's start).
    record = lineage.training_record(
        run, recorder.metrics if recorder else [], recorder.environment if recorder else None
    )
    lifecycle.retry_transient(
        lambda: _add_trained_model(run, outcome, manifest, record), lifecycle.FINISH_PATIENCE_SECONDS
    )


def _add_trained_model(run: Run, outcome, manifest: dict, record: dict | None = None) -> None:
    with transaction.atomic():
        number = (TrainedModel.objects.filter(pipeline=run.pipeline).aggregate(n=Max("number"))["n"] or 0) + 1
        artifact = f"models/{run.pipeline_id}/{number}-run{run.pk}.pkl"
        size, _digest = storage.copy_file_in(artifact, Path(outcome.model_path))
        TrainedModel.objects.create(
            pipeline=run.pipeline,
            version=run.version,
            run=run,
            number=number,
            artifact=artifact,
            size=size,
            label=db_text(str(manifest.get("label") or "")[:200]),
            model_names=[db_text(str(name)) for name in manifest.get("models") or []],
            arg_names=[db_text(str(name)) for name in manifest.get("args") or []],
            **(record or {}),
        )


def db_text(text: str) -> str:
    """Text a pipeline produced, storable in any database: PostgreSQL text refuses NUL characters."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _finish_row(run: Run, status: str, error: str | None = None, outcome=None, **extra) -> None:
    fields = {"error": None if error is None else db_text(error), **extra}
    if outcome is not None and getattr(outcome, "peak_rss_mb", None) is not None:
        fields["peak_memory_mb"] = outcome.peak_rss_mb
    # The worker forgets the run in execute_run's `finally`, whatever happened here.
    record_outcome(run.pk, status, fields)


def record_outcome(run_id: int, status: str, fields: dict, last_resort: bool = False) -> bool:
    """Write how a run ended, whatever the database does meanwhile; True once it is written (or the
    run turned out to be no longer running).

    A database that stays away past lifecycle.FINISH_PATIENCE_SECONDS: the outcome is kept in
    memory and written by the heartbeat thread as soon as it can be (:data:`pending_outcomes`),
    which vouches for the run meanwhile so nobody fails it as lost. A write the database refuses
    outright (not a lost connection): the run fails saying why, with its log and result kept.
    """
    try:
        lifecycle.finish(run_id, status, **fields)
        return True
    except (OperationalError, InterfaceError) as exc:
        log.error("run %s: could not record that it %s (%s); keeping it to write later", run_id, status, exc)
        pending_outcomes.keep(run_id, status, fields)
        return False
    except DatabaseError as exc:
        log.exception("run %s: the database refused its outcome (%s)", run_id, status)
        if last_resort:
            return False  # even the plain failure was refused: the sweep fails it as lost
        kept = {
            key: fields[key] for key in ("log_chunk", "result_folder", "result_rows", "heartbeat_at") if key in fields
        }
        return record_outcome(
            run_id,
            Run.Status.FAILED,
            {
                **kept,
                "error": db_text(
                    f"The run {status}, but mlopen could not record its outcome: {exc.__class__.__name__}: {exc}"
                ),
            },
            last_resort=True,
        )


class PendingOutcomes:
    """Outcomes of finished runs that could not be written yet (the database was away), by run id;
    the worker's heartbeat thread writes them (:meth:`write_due`) and vouches for their runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: dict[int, tuple[str, dict]] = {}

    def keep(self, run_id: int, status: str, fields: dict) -> None:
        with self._lock:
            self._outcomes[run_id] = (status, fields)

    def run_ids(self) -> list[int]:
        with self._lock:
            return list(self._outcomes)

    def write_due(self) -> list[int]:
        """Try each kept outcome once more (briefly: the next beat is the next try); return the ids written."""
        written = []
        for run_id in self.run_ids():
            with self._lock:
                status, fields = self._outcomes[run_id]
            try:
                lifecycle.finish(run_id, status, patience=0, **fields)
            except (OperationalError, InterfaceError) as exc:
                log.warning("run %s: its outcome still cannot be written (%s)", run_id, exc)
                continue
            except DatabaseError:
                log.exception("run %s: the database refused its outcome; failing it", run_id)
                with self._lock:
                    self._outcomes.pop(run_id, None)
                record_outcome(
                    run_id,
                    Run.Status.FAILED,
                    {"log_chunk": fields.get("log_chunk"), "error": "mlopen could not record this run's outcome."},
                    last_resort=True,
                )
                continue
            with self._lock:
                self._outcomes.pop(run_id, None)
            written.append(run_id)
            log.info("run %s: its outcome (%s) is written at last", run_id, status)
        return written


pending_outcomes = PendingOutcomes()
