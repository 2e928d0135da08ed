"""`mlopen pipeline upload | list | show`: pipelines, their versions, parameters and trained models."""

from __future__ import annotations

from functools import partial

from mlopen.client.commands.shared import add_command, add_group, add_json_flag, add_page_flags, connect
from mlopen.client.formatting import escape_markup, format_size, format_time, one_line
from mlopen.client.output import ListTable, Output, emit


def register(subparsers) -> None:
    pipeline = add_group(subparsers, "pipeline", "upload, list and show pipelines")
    upload = add_command(
        pipeline,
        "upload",
        upload_command,
        "upload a control file (and support files) as a new pipeline or its next version",
    )
    upload.add_argument("control", help="the control file (.py)")
    upload.add_argument(
        "support",
        nargs="*",
        help="support files and folders: a folder keeps its name and layout (textnet/ gives textnet/model.py), "
        "a file inside the control file's folder its path from there, any other file goes beside it",
    )
    upload.add_argument(
        "--name", help="pipeline name (default: the control file's name); an existing name gets a new version"
    )
    upload.add_argument("--requirements", help="a requirements.txt: the pipeline gets its own environment")
    upload.add_argument("--description", help="description (default: the control file's docstring)")
    upload.add_argument("--runtime", help="the runtime (locked package set) it runs on (default: the server's)")
    add_json_flag(upload)
    listing = add_command(pipeline, "list", list_command, "list pipelines")
    add_page_flags(listing)
    add_json_flag(listing)
    show = add_command(pipeline, "show", show_command, "show a pipeline: versions, parameters, models")
    show.add_argument("pipeline", metavar="NAME|ID")
    add_json_flag(show)


def upload_command(args, out: Output) -> int:
    with connect(args) as client:
        out.note(
            f"Uploading {args.control}"
            + (f" with {len(args.support)} support files" if args.support else "")
            + " (the server loads it to read its parameters)..."
        )
        pipeline = client.upload_pipeline(
            args.control,
            args.support,
            name=args.name,
            requirements=args.requirements,
            description=args.description,
            runtime=args.runtime,
        )
    if pipeline.get("unchanged"):
        # The same files as the latest version: the server made no new version and says so.
        out.note(pipeline.get("message") or "Nothing changed: the latest version has these files.")
        return emit(out, pipeline, show=partial(show_pipeline, verb="Unchanged:"))
    return emit(out, pipeline, show=partial(show_pipeline, verb="Uploaded"))


def list_command(args, out: Output) -> int:
    with connect(args) as client:
        body = client.pipelines(page=args.page, page_size=args.page_size)
    return emit(
        out,
        body,
        page=args.page,
        table=ListTable(
            ["ID", "NAME", "VERSION", "MODEL", "UPDATED", "DESCRIPTION"],
            _pipeline_row,
            empty="No pipelines yet. Upload one with `mlopen pipeline upload CONTROL.py`.",
        ),
    )


def _pipeline_row(pipeline: dict) -> list:
    model = pipeline.get("current_model")
    return [
        pipeline["id"],
        pipeline["name"],
        pipeline.get("version") or "-",
        f"#{model['number']}" if model else "-",
        format_time(pipeline.get("updated_at")),
        one_line(pipeline.get("description"), 50),
    ]


def show_command(args, out: Output) -> int:
    with connect(args) as client:
        pipeline = client.pipeline(args.pipeline)
    return emit(out, pipeline, show=_show_pipeline_history)


def show_pipeline(out: Output, pipeline: dict, verb: str | None = None) -> None:
    """Name, description, files, parameters and current model of a pipeline."""
    versions = pipeline.get("versions") or []
    latest = versions[0] if versions else None
    heading = f"{verb} " if verb else ""
    out.print(
        f"[bold]{heading}{escape_markup(pipeline['name'])}[/bold] v{pipeline.get('version') or '-'} "
        f"(pipeline {pipeline['id']})"
    )
    if pipeline.get("description"):
        out.print(escape_markup(pipeline["description"].strip()))
    if latest:
        files = ", ".join(latest.get("files") or [])
        env = latest.get("env_status")
        out.print(f"files: {escape_markup(files)}" + (f"; environment: {env}" if env and env != "none" else ""))
    for kind in ("run", "train"):
        rows = _parameter_rows((pipeline.get("params") or {}).get(kind))
        if rows:
            out.table(["PARAMETER", "TYPE", ""], rows, title=f"{kind} parameters")
    model = pipeline.get("current_model")
    out.print(
        f"current model: #{model['number']} from run {model['run'] or '-'} ({format_size(model['size'])})"
        if model
        else "current model: none (train it with `mlopen run NAME --train`)"
    )


def _show_pipeline_history(out: Output, pipeline: dict) -> None:
    """The pipeline, then tables of its versions and trained models."""
    show_pipeline(out, pipeline)
    versions = pipeline.get("versions") or []
    if versions:
        out.table(
            ["VERSION", "CONTROL FILE", "FILES", "ENVIRONMENT", "UPLOADED"],
            [
                [
                    v["number"],
                    v["control_filename"],
                    len(v.get("files") or []),
                    v.get("env_status"),
                    format_time(v.get("created_at")),
                ]
                for v in versions
            ],
            title="versions",
        )
    models = pipeline.get("trained_models") or []
    if models:
        out.table(
            ["MODEL", "VERSION", "RUN", "SIZE", "SAVED"],
            [
                [
                    f"#{m['number']}",
                    m.get("version"),
                    m.get("run") or "-",
                    format_size(m.get("size")),
                    format_time(m.get("created_at")),
                ]
                for m in models
            ],
            title="trained models",
        )


def _parameter_rows(spec: dict | None) -> list[list]:
    """A parameter spec as table rows: name, type, and its default, choices and whether it is optional."""
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
