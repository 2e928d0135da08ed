"""`mlopen run PIPELINE` starts a run (or a training); `mlopen runs list | show | logs | wait | cancel |
rerun | download` follow and fetch runs (`name | note | tag | delete | compare`: run_labels.py).
Waiting exits 3 when the run failed and 4 when it was cancelled.
"""

from __future__ import annotations

import os
import sys
import time

from mlopen.client.client import FINISHED, Client, Conflict
from mlopen.client.commands import run_labels
from mlopen.client.commands.datasets import upload_with_bar
from mlopen.client.commands.shared import add_command, add_group, add_json_flag, add_page_flags, connect
from mlopen.client.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_CANCELLED, EXIT_RUN_FAILED, UsageError
from mlopen.client.follow import RunWatcher, print_log
from mlopen.client.formatting import escape_markup, format_duration, format_size, format_time, one_line, plain_text
from mlopen.client.output import ListTable, Output, emit


def register(subparsers) -> None:
    run = add_command(
        subparsers, "run", run_command, "run (or --train) a pipeline, optionally on a local file, and wait for it"
    )
    run.add_argument("pipeline", metavar="PIPELINE", help="pipeline name or id")
    run.add_argument("--train", action="store_true", help="train the pipeline instead of running it")
    run.add_argument("--input", metavar="DATASET_ID|FILE", help="a dataset id, or a local file to upload first")
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter value (repeatable); NAME=@FILE uploads FILE for a file parameter",
    )
    run.add_argument("--timeout", type=int, help="stop the run after this many seconds")
    run.add_argument(
        "--model", metavar="ID|ALIAS", help="the trained model to use (default: production's, else the newest)"
    )
    run.add_argument("--version", type=int, metavar="N", help="the pipeline version to run (default: the latest)")
    run.add_argument("--wait", action="store_true", help="show progress and the log until the run finishes")
    add_json_flag(run)

    runs = add_group(subparsers, "runs", "list, show, follow, cancel and download runs")
    listing = add_command(runs, "list", list_command, "list runs, newest first")
    listing.add_argument("--pipeline", help="only runs of this pipeline (name or id)")
    listing.add_argument("--status", help="only runs with this status (comma-separate several)")
    listing.add_argument("--kind", choices=["train", "run"], help="only trainings or only runs")
    listing.add_argument("--user", help="only runs of this user (admins)")
    listing.add_argument("-q", "--search", help="text in the run's name, notes, pipeline or input name")
    listing.add_argument("--tag", action="append", help="only runs with this tag (repeat: all of them)")
    listing.add_argument("--version", help="only runs of this pipeline version number")
    listing.add_argument("--created-after", metavar="DATE", help="only runs created from this ISO date on")
    listing.add_argument("--created-before", metavar="DATE", help="only runs created up to this ISO date")
    listing.add_argument(
        "--ordering", help="created, duration or metric.NAME; '-' before: descending (write --ordering=-metric.NAME)"
    )
    listing.add_argument("--columns", help="comma-separated param.NAME and metric.NAME to show")
    add_page_flags(listing)
    add_json_flag(listing)
    show = add_command(runs, "show", show_command, "show a run, with the first page of its result")
    show.add_argument("run_id", type=int, metavar="ID")
    add_json_flag(show)
    logs = add_command(runs, "logs", logs_command, "print a run's log")
    logs.add_argument("run_id", type=int, metavar="ID")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the run finishes")
    wait = add_command(runs, "wait", wait_command, "wait for a run to finish, showing progress and its log")
    wait.add_argument("run_id", type=int, metavar="ID")
    add_json_flag(wait)
    cancel = add_command(runs, "cancel", cancel_command, "cancel a queued or running run")
    cancel.add_argument("run_id", type=int, metavar="ID")
    add_json_flag(cancel)
    rerun = add_command(runs, "rerun", rerun_command, "run again with the same pipeline, input and parameters")
    rerun.add_argument("run_id", type=int, metavar="ID")
    rerun.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="change a parameter (repeatable)"
    )
    rerun.add_argument("--model", metavar="ID|ALIAS", help="use another trained model")
    rerun.add_argument("--version", type=int, metavar="N", help="run another pipeline version")
    rerun.add_argument("--input", type=int, metavar="DATASET_ID", help="run on another dataset")
    rerun.add_argument("--wait", action="store_true", help="wait for the new run to finish")
    add_json_flag(rerun)
    download = add_command(
        runs, "download", download_command, "download a run's whole result table (zip: with its images)"
    )
    download.add_argument("run_id", type=int, metavar="ID")
    download.add_argument("--format", choices=["csv", "json", "zip"], default="csv")
    download.add_argument("-o", "--output", help="file to write ('-' for stdout; default: run-ID.csv|json|zip)")
    run_labels.register(runs)


# --- starting a run ---------------------------------------------------------------------------------


def run_command(args, out: Output) -> int:
    params = _parse_params(args.param)
    with connect(args) as client:
        input_id = None
        if args.input is not None:
            input_id = (
                upload_with_bar(client, out, args.input)["id"]
                if os.path.isfile(args.input)
                else client.resolve_input(args.input)
            )
        for name, value in params.items():
            if value.startswith("@"):  # NAME=@FILE: upload FILE for a file parameter
                params[name] = upload_with_bar(client, out, value[1:])["id"]
        run = _start_when_ready(client, out, args, input_id, params)
        return _after_start(client, out, run, args.wait)


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--param {pair!r}: write NAME=VALUE")
        if name in params:
            raise UsageError(f"--param {name} is given twice")
        params[name] = value
    return params


def _start_when_ready(client: Client, out: Output, args, input_id, params) -> dict:
    """Start the run; with --wait, first wait for a pipeline environment that is still building."""
    announced = False
    while True:
        try:
            return client.start_run(
                args.pipeline,
                train=args.train,
                input=input_id,
                params=params,
                timeout=args.timeout,
                model=args.model,
                version=args.version,
            )
        except Conflict as exc:
            if not args.wait or exc.errors.get("pipeline") != "Environment building.":
                raise
            if not announced:
                out.note("The pipeline's environment is still being built; waiting for it...")
                announced = True
            time.sleep(2)


def _after_start(client: Client, out: Output, run: dict, wait: bool) -> int:
    """What `run` and `runs rerun` print once the run is queued: where it is, or (--wait) how it ended."""
    what = "training" if run["kind"] == "train" else "run"
    if not wait:
        return emit(
            out,
            run,
            text=f"Queued {what} of {escape_markup(run['pipeline_name'])} v{run['version']}: "
            f"run {run['id']}. Follow it with `mlopen runs wait {run['id']}`.",
        )
    if not out.as_json:
        out.note(f"Queued {what} of {run['pipeline_name']} v{run['version']}: run {run['id']}.")
    return _wait_and_report(client, out, run["id"])


def _wait_and_report(client: Client, out: Output, run_id: int) -> int:
    """Wait for the run, tailing its log; print it, and exit 0, 3 (failed) or 4 (cancelled)."""
    try:
        with RunWatcher(client, out, run_id) as watcher:
            run = client.wait(run_id, on_update=watcher.update)
    except KeyboardInterrupt:
        out.note(f"Stopped waiting; run {run_id} goes on (`mlopen runs cancel {run_id}` stops it).")
        return EXIT_INTERRUPTED
    status = run["status"]
    # A failed or cancelled run is shown only as --json; otherwise its error line says it all.
    emit(out, run, show=show_run if status == "succeeded" else None)
    if status == "succeeded":
        return EXIT_OK
    reason = run.get("error") or ("cancelled" if status == "cancelled" else "no error message")
    sys.stderr.write(f"error: run {run_id} {status}: {reason.strip()}\n")
    return EXIT_RUN_CANCELLED if status == "cancelled" else EXIT_RUN_FAILED


# --- showing runs ------------------------------------------------------------------------------------


def show_run(out: Output, run: dict) -> None:
    """A run: what ran on what, how it went, its first result rows, text and metrics."""
    status = run["status"]
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(status, "cyan")
    what = "training" if run["kind"] == "train" else "run"
    out.print(
        f"[bold]run {run['id']}[/bold]: {what} of {escape_markup(run['pipeline_name'])} v{run['version']} "
        f"[{colour}]{status}[/{colour}]" + (f" in {format_duration(run['duration'])}" if run.get("duration") else "")
    )
    details = [
        ("owner", run.get("owner")),
        ("input", f"{run.get('input_name') or ''} (dataset {run['input']})" if run.get("input") else None),
        ("params", ", ".join(f"{k}={v!r}" for k, v in (run.get("params") or {}).items()) or None),
        ("model", f"#{run['trained_model']}" if run.get("trained_model") else None),
        ("created", format_time(run.get("created_at"))),
        ("worker", run.get("worker") or None),
    ]
    for label, value in details:
        if value:
            out.print(f"  {label}: {escape_markup(value)}")
    if run.get("progress") and status not in FINISHED:
        progress = run["progress"]
        fraction = f"{progress['fraction']:.0%} " if progress.get("fraction") is not None else ""
        out.print(f"  progress: {fraction}{escape_markup(progress.get('message') or '')}")
    if run.get("error"):
        out.print(f"  [red]error[/red]: {escape_markup(run['error'].strip())}")
    if run.get("result"):
        _show_result(out, run["id"], run["result"])
    metrics = run.get("metrics") or {}
    if metrics:
        out.table(
            ["METRIC", "LAST VALUE", "POINTS"],
            [[name, points[-1]["value"], len(points)] for name, points in metrics.items()],
            title="metrics",
        )


def _show_result(out: Output, run_id: int, result: dict) -> None:
    if result.get("data") is not None:
        rows = result["data"][:20]
        out.table(
            result.get("columns") or [f"column {i + 1}" for i in range(len(rows[0]) if rows else 0)],
            rows,
            title=f"result: {result['rows']} rows" + (" (first 20)" if result["rows"] > 20 else ""),
        )
        out.print(f"Whole table: mlopen runs download {run_id} -o run-{run_id}.csv")
    if result.get("text"):
        out.print(escape_markup(plain_text(result["text"])))
    if result.get("graphs"):
        out.print(f"{len(result['graphs'])} graph(s): open the run's page in the browser to see them.")
    if result.get("images"):
        names = ", ".join(escape_markup(str(image.get("name"))) for image in result["images"][:5])
        out.print(
            f"{len(result['images'])} image(s) ({names}{', ...' if len(result['images']) > 5 else ''}): "
            f"mlopen runs download {run_id} --format zip"
        )
    for warning in result.get("warnings") or []:
        out.print(f"[yellow]warning[/yellow]: {escape_markup(warning)}")


def _run_row(run: dict) -> list:
    return [
        run["id"],
        one_line(run.get("display_name"), 30) + (f" [{', '.join(run['tags'])}]" if run.get("tags") else ""),
        f"{run['pipeline_name']} v{run['version']}",
        run["kind"],
        run["status"],
        run["owner"],
        format_time(run["created_at"]),
        format_duration(run.get("duration")),
        one_line(run.get("error"), 40),
    ]


# --- the `runs` subcommands ----------------------------------------------------------------------------


def list_command(args, out: Output) -> int:
    with connect(args) as client:
        body = client.runs(
            page=args.page,
            page_size=args.page_size,
            pipeline=args.pipeline,
            kind=args.kind,
            status=args.status,
            user=args.user,
            q=args.search,
            tag=",".join(args.tag) if args.tag else None,
            version=args.version,
            created_after=args.created_after,
            created_before=args.created_before,
            ordering=args.ordering,
            columns=args.columns,
        )
    columns = [column.strip() for column in (args.columns or "").split(",") if column.strip()]

    def row(run: dict) -> list:
        extra = [run.get("columns", {}).get(column) for column in columns]
        return [*_run_row(run), *("—" if value is None else str(value) for value in extra)]

    return emit(
        out,
        body,
        page=args.page,
        table=ListTable(
            ["ID", "NAME", "PIPELINE", "KIND", "STATUS", "OWNER", "CREATED", "DURATION", "ERROR", *columns],
            row,
            empty="No runs.",
        ),
    )


def show_command(args, out: Output) -> int:
    with connect(args) as client:
        run = client.run(args.run_id)
    return emit(out, run, show=show_run)


def logs_command(args, out: Output) -> int:
    with connect(args) as client:
        try:
            status = print_log(client, args.run_id, args.follow)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    if args.follow:
        out.note(f"run {args.run_id} {status}")
    return EXIT_OK


def wait_command(args, out: Output) -> int:
    with connect(args) as client:
        return _wait_and_report(client, out, args.run_id)


def cancel_command(args, out: Output) -> int:
    with connect(args) as client:
        run = client.cancel_run(args.run_id)
    return emit(
        out,
        run,
        text=f"Cancelled run {run['id']}."
        if run["status"] == "cancelled"
        else f"Asked the worker to stop run {run['id']}; it will show as cancelled in a moment.",
    )


def rerun_command(args, out: Output) -> int:
    with connect(args) as client:
        changes: dict = {"params": _parse_params(args.param)} if args.param else {}
        for name in ("model", "version", "input"):
            if getattr(args, name) is not None:
                changes[name] = getattr(args, name)
        run = client.rerun(args.run_id, **changes)
        return _after_start(client, out, run, args.wait)


def download_command(args, out: Output) -> int:
    with connect(args) as client:
        if args.output == "-":
            client.download_result(args.run_id, sys.stdout.buffer, format=args.format)
            sys.stdout.buffer.flush()
            return EXIT_OK
        target = args.output or f"run-{args.run_id}.{args.format}"
        written = client.download_result(args.run_id, target, format=args.format)
    out.print(f"Saved {format_size(written)} to {escape_markup(target)}.")
    return EXIT_OK
