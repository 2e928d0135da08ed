"""Who the client is on which server: `mlopen login`, `logout` and `whoami`.

Login checks the URL and token against the server before saving them as a profile (mlopen.client.config).
"""

from __future__ import annotations

import getpass
import os
import sys

from mlopen.client import config
from mlopen.client.client import Client, ConfigError, normalize_url
from mlopen.client.commands.shared import add_command, add_json_flag, connect
from mlopen.client.exit_codes import EXIT_OK
from mlopen.client.formatting import escape_markup
from mlopen.client.output import Output, emit


def register(subparsers) -> None:
    login = add_command(subparsers, "login", login_command, "check a server URL and token, and save them as a profile")
    login.add_argument("--no-save", action="store_true", help="only check the credentials")
    add_command(subparsers, "logout", logout_command, "forget a saved profile")
    add_json_flag(add_command(subparsers, "whoami", whoami_command, "show the user the token belongs to"))


def login_command(args, out: Output) -> int:
    profile = getattr(args, "profile", None) or config.DEFAULT_PROFILE
    saved = config.load_config()["profiles"].get(profile) or {}
    url = getattr(args, "url", None) or os.environ.get("MLOPEN_URL") or saved.get("url")
    if not url:
        raise ConfigError("which server? pass --url URL (or set MLOPEN_URL)")
    url = normalize_url(url)
    token = getattr(args, "token", None) or os.environ.get("MLOPEN_TOKEN") or _ask_for_token(url)
    if not token:
        raise ConfigError("no token given")
    with Client(url, token) as client:
        me = client.me()
    if args.no_save:
        out.print(f"The token for {escape_markup(url)} belongs to {escape_markup(me['username'])} ({me['role']}).")
        return EXIT_OK
    path = config.save_profile(profile, url, token)
    out.print(
        f"Logged in to {escape_markup(url)} as {escape_markup(me['username'])} ({me['role']}); "
        f"saved profile {escape_markup(profile)!r} in {escape_markup(path)}."
    )
    return EXIT_OK


def _ask_for_token(url: str) -> str:
    """The token from a prompt, or from the first line of standard input when it is not a terminal."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return getpass.getpass(f"API token for {url} (from your profile page or `mlopen user token NAME`): ").strip()


def logout_command(args, out: Output) -> int:
    profile = getattr(args, "profile", None) or config.load_config().get("default") or config.DEFAULT_PROFILE
    if config.remove_profile(profile):
        out.print(f"Removed profile {escape_markup(profile)!r} from {escape_markup(config.config_path())}.")
    else:
        out.print(f"There was no profile {escape_markup(profile)!r}.")
    return EXIT_OK


def whoami_command(args, out: Output) -> int:
    with connect(args) as client:
        me = client.me()
    return emit(out, me, text=f"{escape_markup(me['username'])} ({me['role']}) on {escape_markup(client.url)}")
