"""A real HTTP server that records the webhook calls it gets, for tests."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.polling import wait_until


@dataclass
class Call:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """Listen on 127.0.0.1, answer with ``status`` (changeable), and keep every call.

    With ``tls``, the receiver speaks HTTPS with that server context.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.calls: list[Call] = []
        self.statuses: list[int] = []  # answers to give first, one per call; then 200
        self.redirect_to: str | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                receiver.calls.append(Call(self.path, dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if receiver.redirect_to and 300 <= status < 400:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Call]:
        """Wait until ``count`` calls arrived and return them."""
        wait_until(lambda: len(self.calls) >= count, timeout=timeout)
        return self.calls

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()
