"""The `mlopen` command.

Server side: `serve`, `worker`, `manage`, `user`. Client side (talks to a server over HTTP, no
Django needed): `login`, `pipeline`, `dataset`, `run`, `runs`; see mlopen.client.cli.
"""

from __future__ import annotations

import argparse
import os
import sys

SERVER_COMMANDS = ("serve", "worker", "manage", "user")


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlopen.settings")
    import django  # noqa: PLC0415 - server commands only: the client starts without Django

    django.setup()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "manage":
        _setup_django()
        from django.core.management import execute_from_command_line  # noqa: PLC0415 - server command, after django.setup()

        execute_from_command_line(["mlopen manage", *argv[1:]])
        return 0
    if not argv or argv[0] not in SERVER_COMMANDS:
        from mlopen.client.cli import main as client_main  # noqa: PLC0415 - each command loads only its own side

        return client_main(argv)

    parser = argparse.ArgumentParser(prog="mlopen", description="Self-hosted ML pipeline platform.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate, bootstrap, run the web server and N local workers")
    serve.add_argument("--host", default=os.environ.get("MLOPEN_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("MLOPEN_PORT", "8000")))
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local Celery workers to run and restart (default MLOPEN_WORKERS or 1; 0 = web only)",
    )

    worker = sub.add_parser("worker", help="run one worker that executes queued runs")
    worker.add_argument("--name", default=os.environ.get("MLOPEN_WORKER_NAME"))
    worker.add_argument(
        "--queues",
        default=os.environ.get("MLOPEN_QUEUES"),
        help="comma-separated queues to take runs from (default: the default queue)",
    )
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument("--quiet", action="store_true", help="no start-up banner")

    user = sub.add_parser("user", help="manage users and their API tokens")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create = user_sub.add_parser("create", help="create a user")
    create.add_argument("name")
    create.add_argument("--role", choices=["admin", "author", "user"], default="user")
    create.add_argument("--email", default="")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    token = user_sub.add_parser(
        "token", help="create a new API token for the user and print it (shown once; stored hashed)"
    )
    token.add_argument("name")
    token.add_argument("--token-name", default="created by mlopen user token", help="what the token is for")
    token.add_argument("--expires-in-days", type=int, default=None, help="default: never expires")
    role = user_sub.add_parser("role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=["admin", "author", "user"])

    args = parser.parse_args(argv)
    if args.command == "serve":
        from mlopen.cli.serve import serve as run_serve  # noqa: PLC0415 - each command loads only its own side

        workers = args.workers if args.workers is not None else int(os.environ.get("MLOPEN_WORKERS", "1"))
        return run_serve(host=args.host, port=args.port, workers=workers)
    if args.command == "worker":
        from mlopen.cli.worker import run_worker  # noqa: PLC0415 - each command loads only its own side

        return run_worker(name=args.name, queues=args.queues, loglevel=args.loglevel, quiet=args.quiet)
    if args.command == "user":
        _setup_django()
        from mlopen.cli.users import run_user_command  # noqa: PLC0415 - after django.setup(): it imports models

        return run_user_command(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
