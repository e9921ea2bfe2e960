"""The process around a queue consumer: health endpoint, signals, and the run loop.

Workers (converter, notification) have no web framework; a small HTTP server
on their own port answers ``/health`` (the process is alive), ``/ready`` (it
holds a broker connection and is consuming) and ``/metrics`` (Prometheus).
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common import metrics
from common.messaging import Consumer

log = logging.getLogger(__name__)


class HealthServer:
    """Serve ``/health``, ``/ready`` and ``/metrics`` for one consumer on a background thread."""

    def __init__(self, consumer: Consumer, *, host: str, port: int) -> None:
        routes = {
            "/health": lambda: _json(200, {"status": "ok"}),
            "/ready": lambda: (
                _json(200, {"status": "ready", "queue": consumer.queue})
                if consumer.is_connected
                else _json(503, {"status": "unavailable", "queue": consumer.queue})
            ),
            "/metrics": _metrics,
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                status, content_type, body = (
                    route()
                    if route
                    else _json(404, {"error": "not_found", "message": "No such path."})
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("health %s", format % args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="health-server"
        )

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and free the port."""
        self._server.shutdown()
        self._server.server_close()


def _metrics() -> tuple[int, str, bytes]:
    body, content_type = metrics.exposition()
    return 200, content_type, body


def _json(status: int, body: dict[str, object]) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body).encode()


def run_worker(consumer: Consumer, *, health_host: str, health_port: int) -> None:
    """Run ``consumer`` in the foreground until SIGTERM/SIGINT, with its health server."""
    health = HealthServer(consumer, host=health_host, port=health_port)
    health.start()
    consumer.install_signal_handlers()
    log.info("health endpoint on %s:%d", health_host, health.port)
    try:
        consumer.run()
    finally:
        health.stop()
