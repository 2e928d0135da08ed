"""The web server `mlopen serve` starts: waitress serving Django, configured from the settings.

waitress buffers each request whole in its asynchronous I/O loop (a large body in a temporary file)
and only then hands it to one of its MLOPEN_WEB_THREADS threads, so clients that send slowly, or
stall, hold a socket and not a thread: /healthz and everyone else keep being answered. A connection
silent for MLOPEN_WEB_CLIENT_TIMEOUT seconds is closed; at most MLOPEN_WEB_MAX_CONNECTIONS are open
at once (poll(), not select(), so more than 1024 are possible).

`python -m mlopen.cli.web --host H --port P`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Room above the upload limit for a multipart body's own bytes; past it waitress answers 413 before
# Django sees the request (below it, Django's own limit answers with its message).
BODY_MARGIN_BYTES = 16 * 1024 * 1024


def options() -> dict:
    """waitress's settings, from mlopen's."""
    from django.conf import settings  # noqa: PLC0415 - read once Django is set up, in main()

    return {
        "threads": settings.MLOPEN_WEB_THREADS,
        "channel_timeout": settings.MLOPEN_WEB_CLIENT_TIMEOUT,
        "connection_limit": settings.MLOPEN_WEB_MAX_CONNECTIONS,
        "asyncore_use_poll": True,
        "max_request_body_size": settings.MLOPEN_MAX_UPLOAD_MB * 1024 * 1024 + BODY_MARGIN_BYTES,
        # Forwarded headers are Django's to judge (mlopen.core.clients, MLOPEN_PROXY_COUNT): waitress
        # neither believes them nor drops them.
        "clear_untrusted_proxy_headers": False,
        "ident": "mlopen",
        "expose_tracebacks": False,
    }


def _make_access_log_folder() -> None:
    """MLOPEN_ACCESS_LOG may name a file in a folder not made yet: made here, once, rather than
    every request's line failing to be written."""
    from django.conf import settings  # noqa: PLC0415 - Django is set up by now

    filename = settings.LOGGING["handlers"]["access"].get("filename")
    if filename:
        Path(filename).parent.mkdir(parents=True, exist_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlopen.cli.web", description="mlopen's web server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlopen.settings")
    import waitress  # noqa: PLC0415 - only the web server process needs it

    from mlopen.wsgi import application  # noqa: PLC0415 - sets Django up

    _make_access_log_folder()
    waitress.serve(application, host=args.host, port=args.port, **options())


if __name__ == "__main__":
    main()
