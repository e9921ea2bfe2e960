"""A real HTTP server on 127.0.0.1 that serves a video the way origins do, good or bad.

The URL-import tests fetch from it. Each path is one behaviour:

- ``/<name>``: the bytes of ``files[name]`` with a Content-Length;
- ``/chunked/<name>``: the same bytes, chunked (no Content-Length);
- ``/slow/<name>``: the bytes in pieces of ``drip_bytes``, one every ``drip_seconds``;
- ``/flaky/<name>``: 503 for the first ``failures`` requests of that path, then the bytes;
- ``/huge``: announces ``HUGE_BYTES`` and sends video bytes until the caller hangs up;
- ``/endless``: the same without a Content-Length (chunked), so only counting stops it;
- ``/redirect?to=<url>``: a 302 to that URL;
- anything else: 404.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HUGE_BYTES = 64 * 1024**3


class MediaOrigin:
    """Serve ``files`` (name → bytes) on 127.0.0.1 and count what it sent."""

    def __init__(self, files: dict[str, bytes], *, drip_bytes: int = 4096) -> None:
        self.files = files
        self.failures = 1
        self.drip_bytes = drip_bytes
        self.drip_seconds = 0.5
        self.requests: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()  # body bytes written, by path
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Keep the test output quiet."""

            def do_GET(self) -> None:
                origin._serve(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        """Return the URL of ``path`` on this origin."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def __enter__(self) -> MediaOrigin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        kind, _, name = parts.path.lstrip("/").partition("/")
        with self._lock:
            self.requests[parts.path] += 1
            count = self.requests[parts.path]
        try:
            if kind == "redirect":
                self._head(handler, 302, {"Location": parse_qs(parts.query)["to"][0]}, length=0)
            elif kind in ("huge", "endless"):
                self._endless(handler, parts.path, announce=kind == "huge")
            elif kind == "flaky" and count <= self.failures:
                self._head(handler, 503, {"Retry-After": "1"}, length=0)
            elif kind in ("chunked", "slow", "flaky") and name in self.files:
                self._send(handler, parts.path, self.files[name], kind)
            elif kind in self.files and not name:
                self._send(handler, parts.path, self.files[kind], "plain")
            else:
                self._head(handler, 404, {}, length=0)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller hung up: what the size and rate limits do

    def _head(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        *,
        length: int | None,
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "video/mp4")
        for name, value in headers.items():
            handler.send_header(name, value)
        if length is None:
            handler.send_header("Transfer-Encoding", "chunked")
        else:
            handler.send_header("Content-Length", str(length))
        handler.send_header("Connection", "close")
        handler.end_headers()

    def _send(self, handler: BaseHTTPRequestHandler, path: str, data: bytes, kind: str) -> None:
        chunked = kind == "chunked"
        self._head(handler, 200, {}, length=None if chunked else len(data))
        step = self.drip_bytes if kind == "slow" else 64 * 1024
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            self._write(handler, path, piece, chunked=chunked)
            if kind == "slow":
                time.sleep(self.drip_seconds)
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")

    def _endless(self, handler: BaseHTTPRequestHandler, path: str, *, announce: bool) -> None:
        self._head(handler, 200, {}, length=HUGE_BYTES if announce else None)
        piece = next(iter(self.files.values()))[: 64 * 1024]
        while self.sent[path] < HUGE_BYTES:
            self._write(handler, path, piece, chunked=not announce)

    def _write(
        self, handler: BaseHTTPRequestHandler, path: str, piece: bytes, *, chunked: bool
    ) -> None:
        if chunked:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        else:
            handler.wfile.write(piece)
        with self._lock:
            self.sent[path] += len(piece)
