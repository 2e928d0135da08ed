"""The client's commands, one module per resource: account (login, logout, whoami), pipelines,
models, datasets and runs (`run` and `runs`).

Each module's `register(subparsers)` declares its commands, each with a handler that
mlopen.client.cli calls as `handler(args, out)` and whose return value is the exit code. Handlers
print their result with mlopen.client.output.emit and raise MlopenError for anything that went wrong.
"""

from __future__ import annotations

from mlopen.client.commands import account, datasets, models, pipelines, runs

# In the order `mlopen --help` lists them.
COMMAND_MODULES = (account, pipelines, models, datasets, runs)


def register_all(subparsers) -> None:
    for module in COMMAND_MODULES:
        module.register(subparsers)
