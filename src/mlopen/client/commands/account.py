"""Who the client is on which server: `mlopen login`, `logout`, `whoami` and `token list|rotate|revoke`.

Login checks the URL and token against the server before saving them as a profile (mlopen.client.config);
with --username it signs in with the password once and saves a new token made for this machine.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys

from mlopen.client import config
from mlopen.client.client import Client, ConfigError, normalize_url
from mlopen.client.commands.shared import add_command, add_group, add_json_flag, connect
from mlopen.client.exit_codes import EXIT_OK
from mlopen.client.formatting import escape_markup
from mlopen.client.output import Output, emit


def register(subparsers) -> None:
    login = add_command(subparsers, "login", login_command, "check a server URL and token, and save them as a profile")
    login.add_argument("--no-save", action="store_true", help="only check the credentials")
    login.add_argument(
        "--username", help="sign in with this user's password (asked for) and save a new token for this machine"
    )
    login.add_argument("--expires-in-days", type=int, default=None, help="with --username: the new token's lifetime")
    add_command(subparsers, "logout", logout_command, "forget a saved profile")
    add_json_flag(add_command(subparsers, "whoami", whoami_command, "show the user the token belongs to"))
    token_sub = add_group(subparsers, "token", "list, rotate or revoke your API tokens")
    add_json_flag(add_command(token_sub, "list", token_list_command, "your tokens (never their values)"))
    add_command(
        token_sub, "rotate", token_rotate_command, "replace the token in use with a new one and save it in the profile"
    )
    revoke = add_command(token_sub, "revoke", token_revoke_command, "revoke a token by its id")
    revoke.add_argument("id", type=int)


def login_command(args, out: Output) -> int:
    profile = getattr(args, "profile", None) or config.DEFAULT_PROFILE
    saved = config.load_config()["profiles"].get(profile) or {}
    url = getattr(args, "url", None) or os.environ.get("MLOPEN_URL") or saved.get("url")
    if not url:
        raise ConfigError("which server? pass --url URL (or set MLOPEN_URL)")
    url = normalize_url(url)
    if args.username:
        token = _token_from_password(url, args.username, args.expires_in_days)
    else:
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


def _token_from_password(url: str, username: str, expires_in_days: int | None) -> str:
    """A new token named for this machine, made by signing in once with the password."""
    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {username} on {url}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    with Client(url) as client:
        made = client.create_token(
            f"mlopen login on {socket.gethostname()}"[:100], expires_in_days, username=username, password=password
        )
    return made["token"]


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


def token_list_command(args, out: Output) -> int:
    with connect(args) as client:
        tokens = client.tokens()
    lines = [
        f"{t['id']:>5}  {t['state']:<8} {escape_markup(t['prefix'])}…  {escape_markup(t['name'])}"
        + ("  (this one)" if t["current"] else "")
        + (f"  expires {t['expires_at'][:10]}" if t["expires_at"] else "")
        for t in tokens
    ]
    return emit(out, tokens, text="\n".join(lines) or "You have no API tokens.")


def token_rotate_command(args, out: Output) -> int:
    """Rotate the token this command runs with; a token from a profile is replaced there."""
    settings = config.resolve(getattr(args, "url", None), getattr(args, "token", None), getattr(args, "profile", None))
    with connect(args) as client:
        current = next((t for t in client.tokens() if t["current"]), None)
        if current is None:
            raise ConfigError("the token in use is not among your tokens (signed in some other way?)")
        new = client.rotate_token(current["id"])
    from_profile = settings.profile and not getattr(args, "token", None) and not os.environ.get("MLOPEN_TOKEN")
    if from_profile:
        path = config.save_profile(settings.profile, client.url, new["token"], make_default=False)
        out.print(
            f"Rotated {escape_markup(current['name'])!r}: the old token no longer works; "
            f"the new one is saved in profile {escape_markup(settings.profile)!r} ({escape_markup(path)})."
        )
    else:
        # The token came from --token or MLOPEN_TOKEN: there is nowhere to save it but the screen.
        out.print(f"Rotated {escape_markup(current['name'])!r}; the old token no longer works. The new token:")
        out.print(escape_markup(new["token"]))
    return EXIT_OK


def token_revoke_command(args, out: Output) -> int:
    with connect(args) as client:
        client.revoke_token(args.id)
    out.print(f"Revoked token {args.id}.")
    return EXIT_OK
