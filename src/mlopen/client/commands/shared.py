"""What every command module uses: the server options each command accepts, how a command is
declared (`add_command`, `add_group`), and the Client those options point at (`connect`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from mlopen.client import config
from mlopen.client.client import Client, ConfigError
from mlopen.client.exit_codes import EXIT_USAGE
from mlopen.client.output import Output

Handler = Callable[[argparse.Namespace, Output], int]


class CommandParser(argparse.ArgumentParser):
    """A parser whose usage errors print the usage and one `error:` line, then exit EXIT_USAGE."""

    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _server_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = options.add_argument_group("server")
    group.add_argument("--url", help="server URL (default: $MLOPEN_URL, then the saved profile)")
    group.add_argument("--token", help="API token (default: $MLOPEN_TOKEN, then the saved profile)")
    group.add_argument("--profile", help="saved profile to use (default: $MLOPEN_PROFILE, then the default one)")
    return options


# Options every command accepts, before or after its name (a parent of each command's parser).
SERVER_OPTIONS = _server_options()


def add_command(subparsers, name: str, handler: Handler, help_text: str, **kwargs) -> argparse.ArgumentParser:
    """A command that runs `handler(args, out)`; its exit code is what the handler returns."""
    command = subparsers.add_parser(name, parents=[SERVER_OPTIONS], help=help_text, description=help_text, **kwargs)
    command.set_defaults(handler=handler)
    return command


def add_group(subparsers, name: str, help_text: str):
    """A command made of subcommands (`mlopen runs list`); returns the subparsers to add them to."""
    group = subparsers.add_parser(name, help=help_text)
    return group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", parser_class=CommandParser, required=True)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", default=False, help="print the API's JSON")


def add_page_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--page", type=int, default=None, help="page number (from 1)")
    parser.add_argument("--page-size", type=int, default=None, help="items per page")


def connect(args: argparse.Namespace) -> Client:
    """A Client for the server and token from the options, the environment or the saved profile."""
    settings = config.resolve(getattr(args, "url", None), getattr(args, "token", None), getattr(args, "profile", None))
    if not settings.url:
        raise ConfigError("no server: pass --url, set MLOPEN_URL, or run `mlopen login --url URL`")
    if not settings.token:
        raise ConfigError("no API token: pass --token, set MLOPEN_TOKEN, or run `mlopen login`")
    return Client(settings.url, settings.token)
