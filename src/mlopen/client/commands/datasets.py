"""`mlopen dataset upload | list | show | download | delete`: the files runs take as input."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

from mlopen.client.client import Client, MlopenError
from mlopen.client.commands.shared import add_command, add_group, add_json_flag, add_page_flags, connect
from mlopen.client.exit_codes import EXIT_OK
from mlopen.client.formatting import escape_markup, format_size, format_time
from mlopen.client.output import ListTable, Output, emit
from mlopen.client.progress import UploadBar


def register(subparsers) -> None:
    dataset = add_group(subparsers, "dataset", "upload, list, show, download and delete datasets")
    upload = add_command(dataset, "upload", upload_command, "upload a file as a dataset")
    upload.add_argument("file")
    upload.add_argument("--name", help="dataset name (default: the file's name)")
    add_json_flag(upload)
    listing = add_command(dataset, "list", list_command, "list your datasets")
    add_page_flags(listing)
    add_json_flag(listing)
    show = add_command(dataset, "show", show_command, "show a dataset and its first rows")
    show.add_argument("dataset_id", type=int, metavar="ID")
    add_json_flag(show)
    download = add_command(dataset, "download", download_command, "download a dataset's file")
    download.add_argument("dataset_id", type=int, metavar="ID")
    download.add_argument("-o", "--output", help="file to write ('-' for stdout; default: the dataset's file name)")
    delete = add_command(dataset, "delete", delete_command, "delete a dataset")
    delete.add_argument("dataset_id", type=int, metavar="ID")


def upload_with_bar(client: Client, out: Output, path: str, name: str | None = None) -> dict:
    """Upload a local file as a dataset, with a progress bar on stderr; returns the dataset."""
    file = Path(path)
    if not file.is_file():
        raise MlopenError(f"{path}: no such file")
    with UploadBar(out, f"uploading {file.name}", file.stat().st_size) as bar:
        dataset = client.upload_dataset(file, name=name, progress=bar)
    out.note(f"Uploaded {file.name} ({format_size(dataset['size'])}) as dataset {dataset['id']}.")
    return dataset


def upload_command(args, out: Output) -> int:
    with connect(args) as client:
        dataset = upload_with_bar(client, out, args.file, args.name)
    return emit(
        out,
        dataset,
        text=f"Dataset {dataset['id']}: {escape_markup(dataset['name'])} "
        f"({dataset['kind']}, {format_size(dataset['size'])}).",
    )


def list_command(args, out: Output) -> int:
    with connect(args) as client:
        body = client.datasets(page=args.page, page_size=args.page_size)
    return emit(
        out,
        body,
        page=args.page,
        table=ListTable(
            ["ID", "NAME", "FILE", "KIND", "SIZE", "OWNER", "UPLOADED"],
            lambda d: [
                d["id"],
                d["name"],
                d["filename"],
                d["kind"],
                format_size(d["size"]),
                d["owner"],
                format_time(d["created_at"]),
            ],
            empty="No datasets yet. Upload one with `mlopen dataset upload FILE`.",
        ),
    )


def show_command(args, out: Output) -> int:
    with connect(args) as client:
        dataset = client.dataset(args.dataset_id)
        preview = client.preview_dataset(args.dataset_id)
    return emit(out, dataset, show=partial(_show_dataset, preview=preview))


def _show_dataset(out: Output, dataset: dict, preview: dict) -> None:
    """One line about the dataset, then its first rows (a table) or lines (text), or why there are none."""
    out.print(
        f"[bold]{escape_markup(dataset['name'])}[/bold] (dataset {dataset['id']}): "
        f"{escape_markup(dataset['filename'])}, {dataset['kind']}, {format_size(dataset['size'])}, "
        f"uploaded {format_time(dataset['created_at'])} by {escape_markup(dataset['owner'])}"
    )
    if preview.get("kind") == "table":
        out.table(preview.get("columns") or [], preview.get("rows") or [], title="first rows")
    elif preview.get("kind") == "text":
        out.print("\n".join(preview.get("lines") or []), markup=False)
    else:
        out.print(escape_markup(preview.get("message") or ""))


def download_command(args, out: Output) -> int:
    with connect(args) as client:
        if args.output == "-":
            client.download_dataset(args.dataset_id, sys.stdout.buffer)
            return EXIT_OK
        target = args.output or client.dataset(args.dataset_id)["filename"]
        written = client.download_dataset(args.dataset_id, target)
    out.print(f"Saved {format_size(written)} to {escape_markup(target)}.")
    return EXIT_OK


def delete_command(args, out: Output) -> int:
    with connect(args) as client:
        client.delete_dataset(args.dataset_id)
    out.print(f"Deleted dataset {args.dataset_id}.")
    return EXIT_OK
