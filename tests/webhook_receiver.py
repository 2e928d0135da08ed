"""A webhook receiver for tests: an HTTP server on 127.0.0.1 in a thread that records each call
and answers with the next status of its script (then 200)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Call:
    path: str
    headers: dict
    body: bytes


@dataclass
class Receiver:
    statuses: list[int] = field(default_factory=list)  # answered in turn, then 200
    calls: list[Call] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = 60) -> list[Call]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.calls) >= count, timeout=timeout)
        assert len(self.calls) >= count, f"{len(self.calls)} call(s) within {timeout} s, expected {count}"
        return self.calls


def start_receiver(statuses: list[int] | None = None) -> Receiver:
    receiver = Receiver(statuses=list(statuses or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            with receiver.arrived:
                receiver.calls.append(Call(self.path, dict(self.headers.items()), body))
                receiver.arrived.notify_all()

        def log_message(self, *args):
            pass

    receiver.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
    return receiver
