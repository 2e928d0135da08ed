"""`mlopen model list | show | alias | download`: a pipeline's trained models and their aliases."""

from __future__ import annotations

import sys

from mlopen.client.commands.shared import add_command, add_group, add_json_flag, add_page_flags, connect
from mlopen.client.exit_codes import EXIT_OK
from mlopen.client.formatting import escape_markup, format_size, format_time
from mlopen.client.output import ListTable, Output, emit


def register(subparsers) -> None:
    model = add_group(subparsers, "model", "list, show, alias and download a pipeline's trained models")
    listing = add_command(model, "list", list_command, "list a pipeline's trained models, newest first")
    listing.add_argument("pipeline", metavar="PIPELINE", help="pipeline name or id")
    add_page_flags(listing)
    add_json_flag(listing)
    show = add_command(model, "show", show_command, "show a model: aliases, how it was trained, its use")
    show.add_argument("pipeline", metavar="PIPELINE", help="pipeline name or id")
    show.add_argument("model_id", type=int, metavar="MODEL_ID")
    add_json_flag(show)
    alias = add_command(
        model,
        "alias",
        alias_command,
        "make these the model's aliases (`production` makes runs use it); none removes them all",
    )
    alias.add_argument("pipeline", metavar="PIPELINE", help="pipeline name or id")
    alias.add_argument("model_id", type=int, metavar="MODEL_ID")
    alias.add_argument("aliases", nargs="*", metavar="ALIAS")
    add_json_flag(alias)
    download = add_command(model, "download", download_command, "download a model's stored objects (a pickle)")
    download.add_argument("pipeline", metavar="PIPELINE", help="pipeline name or id")
    download.add_argument("model_id", type=int, metavar="MODEL_ID")
    download.add_argument("-o", "--output", help="file to write ('-' for stdout; default: model-ID.pkl)")


def _pipeline_id(client, ref: str) -> int:
    return client.pipeline(ref)["id"]


def list_command(args, out: Output) -> int:
    with connect(args) as client:
        body = client.trained_models(_pipeline_id(client, args.pipeline), page=args.page, page_size=args.page_size)
    return emit(
        out,
        body,
        page=args.page,
        table=ListTable(
            ["ID", "MODEL", "VERSION", "ALIASES", "RUN", "SIZE", "SAVED"],
            lambda m: [
                m["id"],
                f"#{m['number']}",
                m.get("version"),
                ", ".join(m.get("aliases") or []) or "-",
                m.get("run") or "-",
                format_size(m.get("size")),
                format_time(m.get("created_at")),
            ],
            empty="No trained model yet. Train it with `mlopen run PIPELINE --train`.",
        ),
    )


def show_command(args, out: Output) -> int:
    with connect(args) as client:
        model = client.model(_pipeline_id(client, args.pipeline), args.model_id)
    return emit(out, model, show=show_model)


def show_model(out: Output, model: dict) -> None:
    aliases = ", ".join(model.get("aliases") or []) or "none"
    out.print(
        f"[bold]{escape_markup(model['pipeline_name'])} model #{model['number']}[/bold] (id {model['id']}), "
        f"version {model['version']}, {format_size(model.get('size'))}; aliases: {escape_markup(aliases)}"
    )
    training = model.get("training")
    if training:
        out.print(f"trained by run {training['run'] or '-'} on {escape_markup(training['input_name'] or 'no input')}")
        if training.get("input_sha256"):
            out.print(f"input sha256: {training['input_sha256']}")
        for title, values in (("parameters", training.get("params")), ("metrics", training.get("metrics"))):
            if values:
                out.print(f"{title}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    else:
        out.print("how it was trained: not shared with you")
    out.print(f"used by {model['used_by']['count']} runs you can see")


def alias_command(args, out: Output) -> int:
    with connect(args) as client:
        model = client.set_model_aliases(_pipeline_id(client, args.pipeline), args.model_id, args.aliases)
    return emit(out, model, show=show_model)


def download_command(args, out: Output) -> int:
    with connect(args) as client:
        pipeline_id = _pipeline_id(client, args.pipeline)
        if args.output == "-":
            client.download_model(pipeline_id, args.model_id, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return EXIT_OK
        target = args.output or f"model-{args.model_id}.pkl"
        written = client.download_model(pipeline_id, args.model_id, target)
    out.print(f"Saved {format_size(written)} to {escape_markup(target)}.")
    return EXIT_OK
