"""The exit codes of the client commands, and the error that means a command line made no sense.

docs/CLIENT.md lists the same codes for users; scripts depend on them, so they never change.
"""

from __future__ import annotations

from mlopen.client.client import MlopenError

EXIT_OK = 0
EXIT_ERROR = 1  # the server refused, could not be reached, a file is missing
EXIT_USAGE = 2
EXIT_RUN_FAILED = 3
EXIT_RUN_CANCELLED = 4
EXIT_INTERRUPTED = 130


class UsageError(MlopenError):
    """A command line that parses but cannot mean anything (a --param without '='): exits EXIT_USAGE."""
