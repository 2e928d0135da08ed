"""The client half of the `mlopen` command: talk to an mlopen server over its REST API.

    mlopen login --url https://ml.example.org --token TOKEN
    mlopen pipeline upload knn.py helpers.py --name knn
    mlopen run knn --input iris.csv --param k=5 --wait
    mlopen runs download 12 --format csv -o out.csv

Human output is tables on stdout; progress bars, status lines and tailed logs go to stderr, so
`--json` output (exactly the API's JSON) can be piped. Errors are one line on stderr.

The commands are in mlopen.client.commands, one module per resource; this module builds the parser
from them, runs the chosen one, and turns whatever it raises into one line on stderr and an exit
code (mlopen.client.exit_codes): 0 success, 1 error (server refused, unreachable, bad file), 2 bad
command line, 3 the run failed, 4 the run was cancelled, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys

from mlopen.client.client import MlopenError
from mlopen.client.commands import register_all
from mlopen.client.commands.shared import SERVER_OPTIONS, CommandParser
from mlopen.client.exit_codes import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from mlopen.client.output import Output


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="mlopen",
        parents=[SERVER_OPTIONS],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Upload pipelines and datasets to an mlopen server, run them, fetch results.",
        epilog="Server commands: mlopen serve | worker | user | manage (see `mlopen serve --help`).\n"
        "Exit codes: 0 ok, 1 error, 2 bad usage, 3 run failed, 4 run cancelled.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser, required=True)
    register_all(subparsers)
    return parser


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
    except Exception as exc:  # anything else is one line too, unless MLOPEN_DEBUG asks for the traceback
        if os.environ.get("MLOPEN_DEBUG"):
            raise
        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {exc}\n")
        return EXIT_ERROR
