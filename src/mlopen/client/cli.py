"""The client half of the `mlopen` command: talk to an mlopen server over its REST API.

    mlopen login --url https://ml.example.org --token TOKEN
    mlopen pipeline upload knn.py helpers.py --name knn
    mlopen run knn --input iris.csv --param k=5 --wait
    mlopen runs download 12 --format csv -o out.csv

Human output is tables on stdout; progress bars, status lines and tailed logs go to stderr, so
`--json` output (exactly the API's JSON) can be piped. Errors are one line on stderr.

Exit codes: 0 success, 1 error (server refused, unreachable, bad file), 2 bad command line,
3 the run failed, 4 the run was cancelled, 130 interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from mlopen.client import config as config_mod
from mlopen.client.client import FINISHED, Client, ConfigError, Conflict, MlopenError, normalize_url

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_RUN_FAILED = 3
EXIT_RUN_CANCELLED = 4
EXIT_INTERRUPTED = 130


class UsageError(MlopenError):
    """A command line that parses but cannot mean anything (a --param without '=')."""


# --- output -------------------------------------------------------------------------------------


class Output:
    """stdout for results (tables or JSON), stderr for everything else."""

    def __init__(self, as_json: bool = False):
        from rich.console import Console

        self.as_json = as_json
        self.out = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)
        self.err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)

    def json(self, body) -> None:
        sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def print(self, *objects, **kwargs) -> None:
        self.out.print(*objects, **kwargs)

    def note(self, text: str) -> None:
        """A status line on stderr (never mixed into --json output)."""
        self.err.print(text, markup=False)

    def table(self, columns: list[str], rows: list[list], title: str | None = None) -> None:
        from rich import box
        from rich.table import Table

        if title:
            self.out.print(f"[bold]{_escape(title)}[/bold]")
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*["" if cell is None else str(cell) for cell in row])
        self.out.print(table)


def _escape(text) -> str:
    from rich.markup import escape

    return escape(str(text))


def _when(value: str | None) -> str:
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _size(value) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _one_line(text, limit: int = 60) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain_text(html: str) -> str:
    """A result's text may carry HTML markup (<b>, <br>); show it as plain text in a terminal."""
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</li>", "\n", html)
    text = re.sub(r"<[^>]+>", "", text)
    import html as html_mod

    return html_mod.unescape(text).strip()


# --- argument parsing ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _common() -> argparse.ArgumentParser:
    """Options every command accepts, before or after its name."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("server")
    group.add_argument("--url", help="server URL (default: $MLOPEN_URL, then the saved profile)")
    group.add_argument("--token", help="API token (default: $MLOPEN_TOKEN, then the saved profile)")
    group.add_argument("--profile", help="saved profile to use (default: $MLOPEN_PROFILE, then the default one)")
    return common


def _json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", default=False, help="print the API's JSON")


def _page_flags(parser) -> None:
    parser.add_argument("--page", type=int, default=None, help="page number (from 1)")
    parser.add_argument("--page-size", type=int, default=None, help="items per page")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(prog="mlopen", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Upload pipelines and datasets to an mlopen server, run them, fetch results.",
                     epilog="Server commands: mlopen serve | worker | user | manage (see `mlopen serve --help`).\n"
                            "Exit codes: 0 ok, 1 error, 2 bad usage, 3 run failed, 4 run cancelled.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(container, name, handler, help_text, **kwargs):
        child = container.add_parser(name, parents=[common], help=help_text, description=help_text, **kwargs)
        child.set_defaults(handler=handler)
        return child

    login = command(sub, "login", cmd_login, "check a server URL and token, and save them as a profile")
    login.add_argument("--no-save", action="store_true", help="only check the credentials")
    command(sub, "logout", cmd_logout, "forget a saved profile")
    _json_flag(command(sub, "whoami", cmd_whoami, "show the user the token belongs to"))

    pipeline = sub.add_parser("pipeline", help="upload, list and show pipelines")
    pipeline_sub = pipeline.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", parser_class=_Parser)
    pipeline_sub.required = True
    upload = command(pipeline_sub, "upload", cmd_pipeline_upload,
                     "upload a control file (and support files) as a new pipeline or its next version")
    upload.add_argument("control", help="the control file (.py)")
    upload.add_argument("support", nargs="*", help="files placed beside the control file")
    upload.add_argument("--name", help="pipeline name (default: the control file's name); an existing name "
                                       "gets a new version")
    upload.add_argument("--requirements", help="a requirements.txt: the pipeline gets its own environment")
    upload.add_argument("--description", help="description (default: the control file's docstring)")
    _json_flag(upload)
    listing = command(pipeline_sub, "list", cmd_pipeline_list, "list pipelines")
    _page_flags(listing)
    _json_flag(listing)
    show = command(pipeline_sub, "show", cmd_pipeline_show, "show a pipeline: versions, parameters, models")
    show.add_argument("pipeline", metavar="NAME|ID")
    _json_flag(show)

    dataset = sub.add_parser("dataset", help="upload, list, show, download and delete datasets")
    dataset_sub = dataset.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", parser_class=_Parser)
    dataset_sub.required = True
    upload = command(dataset_sub, "upload", cmd_dataset_upload, "upload a file as a dataset")
    upload.add_argument("file")
    upload.add_argument("--name", help="dataset name (default: the file's name)")
    _json_flag(upload)
    listing = command(dataset_sub, "list", cmd_dataset_list, "list your datasets")
    _page_flags(listing)
    _json_flag(listing)
    show = command(dataset_sub, "show", cmd_dataset_show, "show a dataset and its first rows")
    show.add_argument("dataset_id", type=int, metavar="ID")
    _json_flag(show)
    download = command(dataset_sub, "download", cmd_dataset_download, "download a dataset's file")
    download.add_argument("dataset_id", type=int, metavar="ID")
    download.add_argument("-o", "--output", help="file to write ('-' for stdout; default: the dataset's file name)")
    delete = command(dataset_sub, "delete", cmd_dataset_delete, "delete a dataset")
    delete.add_argument("dataset_id", type=int, metavar="ID")

    run = command(sub, "run", cmd_run, "run (or --train) a pipeline, optionally on a local file, and wait for it")
    run.add_argument("pipeline", metavar="PIPELINE", help="pipeline name or id")
    run.add_argument("--train", action="store_true", help="train the pipeline instead of running it")
    run.add_argument("--input", metavar="DATASET_ID|FILE", help="a dataset id, or a local file to upload first")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="a parameter value (repeatable); NAME=@FILE uploads FILE for a file parameter")
    run.add_argument("--timeout", type=int, help="stop the run after this many seconds")
    run.add_argument("--wait", action="store_true", help="show progress and the log until the run finishes")
    _json_flag(run)

    runs = sub.add_parser("runs", help="list, show, follow, cancel and download runs")
    runs_sub = runs.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", parser_class=_Parser)
    runs_sub.required = True
    listing = command(runs_sub, "list", cmd_runs_list, "list runs, newest first")
    listing.add_argument("--pipeline", help="only runs of this pipeline (name or id)")
    listing.add_argument("--status", help="only runs with this status (comma-separate several)")
    listing.add_argument("--kind", choices=["train", "run"], help="only trainings or only runs")
    listing.add_argument("--user", help="only runs of this user (admins)")
    _page_flags(listing)
    _json_flag(listing)
    show = command(runs_sub, "show", cmd_runs_show, "show a run, with the first page of its result")
    show.add_argument("run_id", type=int, metavar="ID")
    _json_flag(show)
    logs = command(runs_sub, "logs", cmd_runs_logs, "print a run's log")
    logs.add_argument("run_id", type=int, metavar="ID")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the run finishes")
    wait = command(runs_sub, "wait", cmd_runs_wait, "wait for a run to finish, showing progress and its log")
    wait.add_argument("run_id", type=int, metavar="ID")
    _json_flag(wait)
    cancel = command(runs_sub, "cancel", cmd_runs_cancel, "cancel a queued or running run")
    cancel.add_argument("run_id", type=int, metavar="ID")
    _json_flag(cancel)
    rerun = command(runs_sub, "rerun", cmd_runs_rerun, "run again with the same pipeline, input and parameters")
    rerun.add_argument("run_id", type=int, metavar="ID")
    rerun.add_argument("--wait", action="store_true", help="wait for the new run to finish")
    _json_flag(rerun)
    download = command(runs_sub, "download", cmd_runs_download, "download a run's whole result table")
    download.add_argument("run_id", type=int, metavar="ID")
    download.add_argument("--format", choices=["csv", "json"], default="csv")
    download.add_argument("-o", "--output", help="file to write ('-' for stdout; default: run-ID.csv|json)")
    return parser


# --- commands -----------------------------------------------------------------------------------


def _client(args, require_token: bool = True) -> Client:
    settings = config_mod.resolve(getattr(args, "url", None), getattr(args, "token", None),
                                  getattr(args, "profile", None))
    if not settings.url:
        raise ConfigError("no server: pass --url, set MLOPEN_URL, or run `mlopen login --url URL`")
    if require_token and not settings.token:
        raise ConfigError("no API token: pass --token, set MLOPEN_TOKEN, or run `mlopen login`")
    return Client(settings.url, settings.token)


def cmd_login(args, out: Output) -> int:
    profile = getattr(args, "profile", None) or config_mod.DEFAULT_PROFILE
    saved = config_mod.load_config()["profiles"].get(profile) or {}
    url = getattr(args, "url", None) or os.environ.get("MLOPEN_URL") or saved.get("url")
    if not url:
        raise ConfigError("which server? pass --url URL (or set MLOPEN_URL)")
    url = normalize_url(url)
    token = getattr(args, "token", None) or os.environ.get("MLOPEN_TOKEN")
    if not token:
        if not sys.stdin.isatty():
            token = sys.stdin.readline().strip()
        else:
            token = getpass.getpass(f"API token for {url} (from your profile page or `mlopen user token NAME`): ")
        token = token.strip()
    if not token:
        raise ConfigError("no token given")
    with Client(url, token) as client:
        me = client.me()
    if args.no_save:
        out.print(f"The token for {_escape(url)} belongs to {_escape(me['username'])} ({me['role']}).")
        return EXIT_OK
    path = config_mod.save_profile(profile, url, token)
    out.print(f"Logged in to {_escape(url)} as {_escape(me['username'])} ({me['role']}); "
              f"saved profile {_escape(profile)!r} in {_escape(path)}.")
    return EXIT_OK


def cmd_logout(args, out: Output) -> int:
    profile = getattr(args, "profile", None) or config_mod.load_config().get("default") or config_mod.DEFAULT_PROFILE
    if config_mod.remove_profile(profile):
        out.print(f"Removed profile {_escape(profile)!r} from {_escape(config_mod.config_path())}.")
    else:
        out.print(f"There was no profile {_escape(profile)!r}.")
    return EXIT_OK


def cmd_whoami(args, out: Output) -> int:
    with _client(args) as client:
        me = client.me()
    if args.json:
        out.json(me)
        return EXIT_OK
    out.print(f"{_escape(me['username'])} ({me['role']}) on {_escape(client.url)}")
    return EXIT_OK


def _param_rows(spec: dict) -> list[list]:
    rows = []
    for name, options in (spec or {}).items():
        extra = []
        if "default" in options:
            extra.append(f"default {options['default']!r}")
        if options.get("choices"):
            extra.append("one of " + ", ".join(map(str, options["choices"])))
        if options.get("blank"):
            extra.append("optional")
        rows.append([name, options.get("type", "?"), "; ".join(extra)])
    return rows


def _show_pipeline(out: Output, pipeline: dict, verb: str | None = None) -> None:
    versions = pipeline.get("versions") or []
    latest = versions[0] if versions else None
    heading = f"{verb} " if verb else ""
    out.print(f"[bold]{heading}{_escape(pipeline['name'])}[/bold] v{pipeline.get('version') or '-'} "
              f"(pipeline {pipeline['id']})")
    if pipeline.get("description"):
        out.print(_escape(pipeline["description"].strip()))
    if latest:
        files = ", ".join(latest.get("files") or [])
        env = latest.get("env_status")
        out.print(f"files: {_escape(files)}" + (f"; environment: {env}" if env and env != "none" else ""))
    for kind in ("run", "train"):
        rows = _param_rows((pipeline.get("params") or {}).get(kind))
        if rows:
            out.table(["PARAMETER", "TYPE", ""], rows, title=f"{kind} parameters")
    model = pipeline.get("current_model")
    out.print(f"current model: #{model['number']} from run {model['run'] or '-'} ({_size(model['size'])})"
              if model else "current model: none (train it with `mlopen run NAME --train`)")


def cmd_pipeline_upload(args, out: Output) -> int:
    with _client(args) as client:
        out.note(f"Uploading {args.control}" + (f" with {len(args.support)} support files" if args.support else "")
                 + " (the server loads it to read its parameters)...")
        pipeline = client.upload_pipeline(args.control, args.support, name=args.name,
                                          requirements=args.requirements, description=args.description)
    if args.json:
        out.json(pipeline)
        return EXIT_OK
    _show_pipeline(out, pipeline, verb="Uploaded")
    return EXIT_OK


def cmd_pipeline_list(args, out: Output) -> int:
    with _client(args) as client:
        body = client.pipelines(page=args.page, page_size=args.page_size)
    if args.json:
        out.json(body)
        return EXIT_OK
    rows = [[p["id"], p["name"], p.get("version") or "-",
             f"#{p['current_model']['number']}" if p.get("current_model") else "-",
             _when(p.get("updated_at")), _one_line(p.get("description"), 50)] for p in body["results"]]
    if not rows:
        out.print("No pipelines yet. Upload one with `mlopen pipeline upload CONTROL.py`.")
        return EXIT_OK
    out.table(["ID", "NAME", "VERSION", "MODEL", "UPDATED", "DESCRIPTION"], rows)
    _page_note(out, body, args)
    return EXIT_OK


def _page_note(out: Output, body: dict, args) -> None:
    shown = len(body["results"])
    if body.get("next") or body.get("previous"):
        page = args.page or 1
        out.note(f"page {page}: {shown} of {body['count']}; use --page {page + 1} for more" if body.get("next")
                 else f"page {page}: {shown} of {body['count']}")


def cmd_pipeline_show(args, out: Output) -> int:
    with _client(args) as client:
        pipeline = client.pipeline(args.pipeline)
    if args.json:
        out.json(pipeline)
        return EXIT_OK
    _show_pipeline(out, pipeline)
    versions = pipeline.get("versions") or []
    if versions:
        out.table(["VERSION", "CONTROL FILE", "FILES", "ENVIRONMENT", "UPLOADED"],
                  [[v["number"], v["control_filename"], len(v.get("files") or []), v.get("env_status"),
                    _when(v.get("created_at"))] for v in versions], title="versions")
    models = pipeline.get("trained_models") or []
    if models:
        out.table(["MODEL", "VERSION", "RUN", "SIZE", "SAVED"],
                  [[f"#{m['number']}", m.get("version"), m.get("run") or "-", _size(m.get("size")),
                    _when(m.get("created_at"))] for m in models], title="trained models")
    return EXIT_OK


class _UploadBar:
    """An upload progress bar on stderr (rich draws it only when stderr is a terminal)."""

    def __init__(self, out: Output, label: str, total: int):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=out.err, transient=True)
        self.task = self.progress.add_task(label, total=total)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, sent: int, total: int | None) -> None:
        self.progress.update(self.task, completed=sent, total=total)


def _upload_with_bar(client: Client, out: Output, path: str, name: str | None = None) -> dict:
    file = Path(path)
    if not file.is_file():
        raise MlopenError(f"{path}: no such file")
    with _UploadBar(out, f"uploading {file.name}", file.stat().st_size) as bar:
        dataset = client.upload_dataset(file, name=name, progress=bar)
    out.note(f"Uploaded {file.name} ({_size(dataset['size'])}) as dataset {dataset['id']}.")
    return dataset


def cmd_dataset_upload(args, out: Output) -> int:
    with _client(args) as client:
        dataset = _upload_with_bar(client, out, args.file, args.name)
    if args.json:
        out.json(dataset)
        return EXIT_OK
    out.print(f"Dataset {dataset['id']}: {_escape(dataset['name'])} ({dataset['kind']}, {_size(dataset['size'])}).")
    return EXIT_OK


def cmd_dataset_list(args, out: Output) -> int:
    with _client(args) as client:
        body = client.datasets(page=args.page, page_size=args.page_size)
    if args.json:
        out.json(body)
        return EXIT_OK
    if not body["results"]:
        out.print("No datasets yet. Upload one with `mlopen dataset upload FILE`.")
        return EXIT_OK
    out.table(["ID", "NAME", "FILE", "KIND", "SIZE", "OWNER", "UPLOADED"],
              [[d["id"], d["name"], d["filename"], d["kind"], _size(d["size"]), d["owner"], _when(d["created_at"])]
               for d in body["results"]])
    _page_note(out, body, args)
    return EXIT_OK


def cmd_dataset_show(args, out: Output) -> int:
    with _client(args) as client:
        dataset = client.dataset(args.dataset_id)
        preview = client.preview_dataset(args.dataset_id)
    if args.json:
        out.json(dataset)
        return EXIT_OK
    out.print(f"[bold]{_escape(dataset['name'])}[/bold] (dataset {dataset['id']}): {_escape(dataset['filename'])}, "
              f"{dataset['kind']}, {_size(dataset['size'])}, uploaded {_when(dataset['created_at'])} "
              f"by {_escape(dataset['owner'])}")
    if preview.get("kind") == "table":
        out.table(preview.get("columns") or [], preview.get("rows") or [], title="first rows")
    elif preview.get("kind") == "text":
        out.print("\n".join(preview.get("lines") or []), markup=False)
    else:
        out.print(_escape(preview.get("message") or ""))
    return EXIT_OK


def cmd_dataset_download(args, out: Output) -> int:
    with _client(args) as client:
        if args.output == "-":
            client.download_dataset(args.dataset_id, sys.stdout.buffer)
            return EXIT_OK
        target = args.output or client.dataset(args.dataset_id)["filename"]
        written = client.download_dataset(args.dataset_id, target)
    out.print(f"Saved {_size(written)} to {_escape(target)}.")
    return EXIT_OK


def cmd_dataset_delete(args, out: Output) -> int:
    with _client(args) as client:
        client.delete_dataset(args.dataset_id)
    out.print(f"Deleted dataset {args.dataset_id}.")
    return EXIT_OK


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


def cmd_run(args, out: Output) -> int:
    params = _parse_params(args.param)
    with _client(args) as client:
        input_id = None
        if args.input is not None:
            input_id = (_upload_with_bar(client, out, args.input)["id"] if os.path.isfile(args.input)
                        else client.resolve_input(args.input))
        for name, value in params.items():
            if value.startswith("@"):  # NAME=@FILE: upload FILE for a file parameter
                params[name] = _upload_with_bar(client, out, value[1:])["id"]
        run = _start_when_ready(client, out, args, input_id, params)
        return _after_start(client, out, run, args.wait, args.json)


def _start_when_ready(client: Client, out: Output, args, input_id, params) -> dict:
    """Start the run; with --wait, first wait for a pipeline environment that is still building."""
    announced = False
    while True:
        try:
            return client.start_run(args.pipeline, train=args.train, input=input_id, params=params,
                                    timeout=args.timeout)
        except Conflict as exc:
            if not args.wait or exc.errors.get("pipeline") != "Environment building.":
                raise
            if not announced:
                out.note("The pipeline's environment is still being built; waiting for it...")
                announced = True
            time.sleep(2)


def _after_start(client: Client, out: Output, run: dict, wait: bool, as_json: bool) -> int:
    if not wait:
        if as_json:
            out.json(run)
        else:
            what = "training" if run["kind"] == "train" else "run"
            out.print(f"Queued {what} of {_escape(run['pipeline_name'])} v{run['version']}: run {run['id']}. "
                      f"Follow it with `mlopen runs wait {run['id']}`.")
        return EXIT_OK
    if not as_json:
        what = "training" if run["kind"] == "train" else "run"
        out.note(f"Queued {what} of {run['pipeline_name']} v{run['version']}: run {run['id']}.")
    return _wait_and_report(client, out, run["id"], as_json)


class _Watcher:
    """Shows a run's progress and log on stderr while Client.wait polls it."""

    def __init__(self, client: Client, out: Output, run_id: int):
        self.client = client
        self.out = out
        self.run_id = run_id
        self.offset = 0
        self.pending = ""
        self.status = None
        self.message = None
        self.fraction = None
        self.progress = None
        self.task = None
        if out.err.is_terminal:
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                     TaskProgressColumn(), TimeElapsedColumn(), console=out.err, transient=True)
            self.task = self.progress.add_task(f"run {run_id}", total=None)

    def __enter__(self):
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()
        # The log's last words may have no newline (a pipeline that died mid-line): show them too.
        self._log_line(self.pending, final=True)
        self.pending = ""

    def _log_line(self, text: str, final: bool = False) -> None:
        if not text:
            return
        if not final and not text.endswith("\n"):
            return
        if self.progress:
            self.progress.console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
        else:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            sys.stderr.flush()

    def update(self, run: dict) -> None:
        text, self.offset, _status = self.client.logs(self.run_id, self.offset)
        if text:
            lines = (self.pending + text).splitlines(keepends=True)
            self.pending = lines.pop() if lines and not lines[-1].endswith("\n") else ""
            for line in lines:
                self._log_line(line)
        progress = run.get("progress") or {}
        fraction, message = progress.get("fraction"), progress.get("message")
        status = run["status"]
        label = f"run {self.run_id} {status}" + (f": {message}" if message else "")
        if self.progress:
            self.progress.update(self.task, description=label, total=1.0 if fraction is not None else None,
                                 completed=fraction or 0)
        elif status not in FINISHED and (status, message, fraction) != (self.status, self.message, self.fraction):
            # No terminal to draw a bar on (CI, a pipe): a line each time the status or progress changes.
            percent = f" {fraction:.0%}" if fraction is not None else ""
            sys.stderr.write(f"[{label}{percent}]\n")
            sys.stderr.flush()
        self.status, self.message, self.fraction = status, message, fraction


def _wait_and_report(client: Client, out: Output, run_id: int, as_json: bool) -> int:
    try:
        with _Watcher(client, out, run_id) as watcher:
            run = client.wait(run_id, on_update=watcher.update)
    except KeyboardInterrupt:
        out.note(f"Stopped waiting; run {run_id} goes on (`mlopen runs cancel {run_id}` stops it).")
        return EXIT_INTERRUPTED
    if as_json:
        out.json(run)
    status = run["status"]
    if status == "succeeded":
        if not as_json:
            _show_run(out, run)
        return EXIT_OK
    reason = run.get("error") or ("cancelled" if status == "cancelled" else "no error message")
    sys.stderr.write(f"error: run {run_id} {status}: {reason.strip()}\n")
    return EXIT_RUN_CANCELLED if status == "cancelled" else EXIT_RUN_FAILED


def _show_run(out: Output, run: dict) -> None:
    status = run["status"]
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(status, "cyan")
    what = "training" if run["kind"] == "train" else "run"
    out.print(f"[bold]run {run['id']}[/bold]: {what} of {_escape(run['pipeline_name'])} v{run['version']} "
              f"[{colour}]{status}[/{colour}]" + (f" in {_duration(run['duration'])}" if run.get("duration") else ""))
    details = [("owner", run.get("owner")), ("input", f"{run.get('input_name') or ''} (dataset {run['input']})"
                                            if run.get("input") else None),
               ("params", ", ".join(f"{k}={v!r}" for k, v in (run.get("params") or {}).items()) or None),
               ("model", f"#{run['trained_model']}" if run.get("trained_model") else None),
               ("created", _when(run.get("created_at"))), ("worker", run.get("worker") or None)]
    for label, value in details:
        if value:
            out.print(f"  {label}: {_escape(value)}")
    if run.get("progress") and status not in FINISHED:
        progress = run["progress"]
        fraction = f"{progress['fraction']:.0%} " if progress.get("fraction") is not None else ""
        out.print(f"  progress: {fraction}{_escape(progress.get('message') or '')}")
    if run.get("error"):
        out.print(f"  [red]error[/red]: {_escape(run['error'].strip())}")
    result = run.get("result")
    if result:
        if result.get("data") is not None:
            rows = result["data"][:20]
            out.table(result.get("columns") or [f"column {i + 1}" for i in range(len(rows[0]) if rows else 0)],
                      rows, title=f"result: {result['rows']} rows" + (" (first 20)" if result["rows"] > 20 else ""))
            out.print(f"Whole table: mlopen runs download {run['id']} -o run-{run['id']}.csv")
        if result.get("text"):
            out.print(_escape(_plain_text(result["text"])))
        if result.get("graphs"):
            out.print(f"{len(result['graphs'])} graph(s): open the run's page in the browser to see them.")
        for warning in result.get("warnings") or []:
            out.print(f"[yellow]warning[/yellow]: {_escape(warning)}")
    metrics = run.get("metrics") or {}
    if metrics:
        out.table(["METRIC", "LAST VALUE", "POINTS"],
                  [[name, points[-1]["value"], len(points)] for name, points in metrics.items()], title="metrics")


def cmd_runs_list(args, out: Output) -> int:
    with _client(args) as client:
        body = client.runs(page=args.page, page_size=args.page_size, pipeline=args.pipeline, kind=args.kind,
                           status=args.status, user=args.user)
    if args.json:
        out.json(body)
        return EXIT_OK
    if not body["results"]:
        out.print("No runs.")
        return EXIT_OK
    out.table(["ID", "PIPELINE", "KIND", "STATUS", "OWNER", "CREATED", "DURATION", "ERROR"],
              [[r["id"], f"{r['pipeline_name']} v{r['version']}", r["kind"], r["status"], r["owner"],
                _when(r["created_at"]), _duration(r.get("duration")), _one_line(r.get("error"), 40)]
               for r in body["results"]])
    _page_note(out, body, args)
    return EXIT_OK


def cmd_runs_show(args, out: Output) -> int:
    with _client(args) as client:
        run = client.run(args.run_id)
    if args.json:
        out.json(run)
        return EXIT_OK
    _show_run(out, run)
    return EXIT_OK


def cmd_runs_logs(args, out: Output) -> int:
    with _client(args) as client:
        offset = 0
        delay = 0.2
        try:
            while True:
                text, offset, status = client.logs(args.run_id, offset)
                if text:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                if not args.follow or status in FINISHED or not status:
                    break
                time.sleep(delay)
                delay = min(delay * 1.5, 1.0)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    if args.follow:
        out.note(f"run {args.run_id} {status}")
    return EXIT_OK


def cmd_runs_wait(args, out: Output) -> int:
    with _client(args) as client:
        return _wait_and_report(client, out, args.run_id, args.json)


def cmd_runs_cancel(args, out: Output) -> int:
    with _client(args) as client:
        run = client.cancel_run(args.run_id)
    if args.json:
        out.json(run)
    elif run["status"] == "cancelled":
        out.print(f"Cancelled run {run['id']}.")
    else:
        out.print(f"Asked the worker to stop run {run['id']}; it will show as cancelled in a moment.")
    return EXIT_OK


def cmd_runs_rerun(args, out: Output) -> int:
    with _client(args) as client:
        run = client.rerun(args.run_id)
        return _after_start(client, out, run, args.wait, args.json)


def cmd_runs_download(args, out: Output) -> int:
    with _client(args) as client:
        if args.output == "-":
            client.download_result(args.run_id, sys.stdout.buffer, format=args.format)
            sys.stdout.buffer.flush()
            return EXIT_OK
        target = args.output or f"run-{args.run_id}.{args.format}"
        written = client.download_result(args.run_id, target, format=args.format)
    out.print(f"Saved {_size(written)} to {_escape(target)}.")
    return EXIT_OK


# --- entry point --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    out = Output(as_json=getattr(args, "json", False))
    try:
        return args.handler(args, out)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except MlopenError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `mlopen runs list | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except OSError as exc:  # a file we were asked to read or write
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        sys.stderr.write(f"error: {where}{exc.strerror or exc}\n")
        return EXIT_ERROR
    except Exception as exc:
        if os.environ.get("MLOPEN_DEBUG"):
            raise
        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {exc}\n")
        return EXIT_ERROR

