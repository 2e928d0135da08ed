"""`mlopen runs name | note | tag | delete | compare`: label runs so they can be found, delete them,
and compare a few side by side."""

from __future__ import annotations

import sys

from mlopen.client.commands.shared import add_command, add_json_flag, connect
from mlopen.client.exit_codes import EXIT_OK, UsageError
from mlopen.client.formatting import escape_markup
from mlopen.client.output import Output, emit


def register(runs) -> None:
    """Adds the subcommands to the `runs` group."""
    name = add_command(runs, "name", name_command, "name a run (an empty name: back to '<pipeline> #<id>')")
    name.add_argument("run_id", type=int, metavar="ID")
    name.add_argument("name", metavar="NAME")
    add_json_flag(name)
    note = add_command(runs, "note", note_command, "set a run's notes (markdown); '-' reads them from stdin")
    note.add_argument("run_id", type=int, metavar="ID")
    note.add_argument("text", metavar="TEXT|-")
    add_json_flag(note)
    tag = add_command(runs, "tag", tag_command, "add tags to a run (--remove: take them off, --clear: all)")
    tag.add_argument("run_id", type=int, metavar="ID")
    tag.add_argument("tags", nargs="*", metavar="TAG")
    tag.add_argument("--remove", action="store_true", help="remove the tags named instead of adding them")
    tag.add_argument("--clear", action="store_true", help="remove every tag (before adding any named)")
    add_json_flag(tag)
    delete = add_command(runs, "delete", delete_command, "delete finished runs with their results and logs")
    delete.add_argument("run_ids", type=int, nargs="+", metavar="ID")
    delete.add_argument("--yes", action="store_true", help="do not ask first")
    compare = add_command(runs, "compare", compare_command, "compare 2 to 10 runs: parameters and metrics")
    compare.add_argument("run_ids", type=int, nargs="+", metavar="ID")
    add_json_flag(compare)


def _labels_text(run: dict) -> str:
    tags = ", ".join(run["tags"]) or "no tags"
    return f"Run {run['id']}: {escape_markup(run['display_name'])} ({escape_markup(tags)})."


def name_command(args, out: Output) -> int:
    with connect(args) as client:
        run = client.update_run(args.run_id, name=args.name)
    return emit(out, run, text=_labels_text(run))


def note_command(args, out: Output) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    with connect(args) as client:
        run = client.update_run(args.run_id, notes=text)
    return emit(out, run, text=f"Run {run['id']}: notes saved ({len(run['notes'])} characters).")


def tag_command(args, out: Output) -> int:
    if not args.tags and not args.clear:
        raise UsageError("name the tags to add (or --remove), or use --clear")
    with connect(args) as client:
        current = [] if args.clear else client.run(args.run_id)["tags"]
        if args.remove:
            tags = [tag for tag in current if tag not in args.tags]
        else:
            tags = current + [tag for tag in args.tags if tag not in current]
        run = client.update_run(args.run_id, tags=tags)
    return emit(out, run, text=_labels_text(run))


def delete_command(args, out: Output) -> int:
    ids = list(dict.fromkeys(args.run_ids))
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("add --yes to delete without being asked")
        answer = input(
            f"Delete {len(ids)} run{'s' if len(ids) != 1 else ''} ({', '.join(map(str, ids))}) for good? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            out.print("Nothing deleted.")
            return EXIT_OK
    with connect(args) as client:
        deleted = client.delete_runs(ids)
    out.print(f"Deleted {deleted} run{'s' if deleted != 1 else ''}.")
    return EXIT_OK


def _cell(value) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _show_comparison(out: Output, body: dict) -> None:
    heads = [f"#{run['id']} {run['display_name']}" for run in body["runs"]]
    runs = [
        ["version", *[f"{run['pipeline_name']} v{run['version']}" for run in body["runs"]]],
        ["input", *[run["input_name"] or "—" for run in body["runs"]]],
        ["status", *[run["status"] for run in body["runs"]]],
    ]
    out.table(["", *heads], runs, title="Runs")
    differing = set(body["differing_params"])
    params = [
        [f"{name} *" if name in differing else name, *map(_cell, values)] for name, values in body["params"].items()
    ]
    if params:
        out.table(["PARAMETER (* differs)", *heads], params, title="Parameters")
    metrics = [
        [name, *[f"{_cell(c['last'])} ({_cell(c['min'])}–{_cell(c['max'])})" if c else "—" for c in cells]]
        for name, cells in body["metrics"].items()
    ]
    if metrics:
        out.table(["METRIC last (min–max)", *heads], metrics, title="Metrics")


def compare_command(args, out: Output) -> int:
    with connect(args) as client:
        body = client.compare_runs(args.run_ids)
    return emit(out, body, show=_show_comparison)
