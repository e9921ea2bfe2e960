"""A real HTTP server that records the webhook calls it gets, for tests."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.polling import wait_until


@dataclass
class Call:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)  # when it arrived (wall clock)


class WebhookReceiver:
    """Listen on 127.0.0.1, answer with ``status`` (changeable), and keep every call.

    With ``tls``, the receiver speaks HTTPS with that server context. With ``drip``,
    it answers as a hostile receiver does: the status line, then one byte of a header
    every ``drip`` seconds, never finishing, until the caller hangs up. ``host`` names
    it in ``url`` (``localhost`` gives a second receiver a host name of its own).
    """

    def __init__(
        self, tls: ssl.SSLContext | None = None, *, drip: float | None = None, host: str = ""
    ) -> None:
        self.calls: list[Call] = []
        self.statuses: list[int] = []  # answers to give first, one per call; then 200
        self.redirect_to: str | None = None
        self.hung_up: list[float] = []  # how long each dripped answer held its caller
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                receiver.calls.append(Call(self.path, dict(self.headers.items()), body))
                if drip is not None:
                    self._drip(drip)
                    return
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if receiver.redirect_to and 300 <= status < 400:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _drip(self, every: float) -> None:
                started = time.monotonic()
                self.close_connection = True
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    while not receiver._closing.wait(every):
                        self.wfile.write(b"a")
                        self.wfile.flush()
                except OSError:
                    receiver.hung_up.append(time.monotonic() - started)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._closing = threading.Event()
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://{host or '127.0.0.1'}:{self.port}/hook"
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
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
