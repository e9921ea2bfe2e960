"""The process around a queue consumer: health endpoint, signals, and the run loop.

Workers (converter, notification) have no web framework; a small HTTP server
on their own port answers ``/health`` (the process is alive and its work, if
any, is moving), ``/ready`` (it holds a broker connection and is consuming) and
``/metrics`` (Prometheus).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common import metrics
from common.errors import TransientError
from common.http.health import Check, alive, readiness
from common.messaging import Consumer

log = logging.getLogger(__name__)


class StallWatch:
    """Tell when the work in hand has made no progress for too long.

    The worker runs each piece of work inside ``working()`` and calls
    ``progressed()`` whenever it moves on; ``problem()`` (which ``/health``
    asks) describes the stall once the work has not moved for ``stall_after``
    seconds. An idle worker is never stalled.
    """

    def __init__(self, stall_after: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._stall_after = stall_after
        self._clock = clock
        self._lock = threading.Lock()
        self._moved_at: float | None = None  # None while no work is in hand

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Watch the work done inside this block, which counts as moving when it starts."""
        with self._lock:
            self._moved_at = self._clock()
        try:
            yield
        finally:
            with self._lock:
                self._moved_at = None

    def progressed(self) -> None:
        """Note that the work in hand moved on."""
        with self._lock:
            if self._moved_at is not None:
                self._moved_at = self._clock()

    def problem(self) -> str | None:
        """Describe the stall, or return None while the work moves or none is in hand."""
        with self._lock:
            moved_at = self._moved_at
        if moved_at is None:
            return None
        still = self._clock() - moved_at
        if still < self._stall_after:
            return None
        return f"no progress for {still:.0f} s (the limit is {self._stall_after:g} s)"


class HealthServer:
    """Serve ``/health``, ``/ready`` and ``/metrics`` for a worker's consumers on a thread.

    ``/health`` fails (503) while ``stall`` reports a problem, so the
    orchestrator restarts a worker whose work is wedged; ``/ready`` fails while
    any consumer lacks its broker connection.
    """

    def __init__(
        self,
        consumers: Sequence[Consumer],
        *,
        host: str,
        port: int,
        stall: StallWatch | None = None,
    ) -> None:
        routes = {
            "/health": lambda: _health(stall),
            "/ready": lambda: _ready(consumers),
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


def _health(stall: StallWatch | None) -> tuple[int, str, bytes]:
    problem = stall.problem() if stall is not None else None
    if problem is None:
        return _json(*alive())
    log.warning("failing the health check: %s", problem)
    return _json(503, {"status": "stalled", "message": problem})


def _ready(consumers: Sequence[Consumer]) -> tuple[int, str, bytes]:
    return _json(*readiness({f"queue {c.queue}": _consuming(c) for c in consumers}))


def _consuming(consumer: Consumer) -> Check:
    def check() -> None:
        if not consumer.is_connected:
            raise TransientError(f"not consuming {consumer.queue}: no broker connection")

    return check


def _metrics() -> tuple[int, str, bytes]:
    body, content_type = metrics.exposition()
    return 200, content_type, body


def _json(status: int, body: dict[str, object]) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body).encode()


def run_worker(
    consumers: Sequence[Consumer],
    *,
    health_host: str,
    health_port: int,
    stall: StallWatch | None = None,
) -> None:
    """Run ``consumers`` until SIGTERM/SIGINT, each on its own thread, with a health server."""
    health = HealthServer(consumers, host=health_host, port=health_port, stall=stall)
    health.start()

    def stop(signum: int, _frame: object) -> None:
        log.info("received %s, stopping after the messages in hand", signal.Signals(signum).name)
        for consumer in consumers:
            consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("health endpoint on %s:%d", health_host, health.port)
    threads = [
        threading.Thread(target=consumer.run, name=f"consume-{consumer.queue}")
        for consumer in consumers
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        health.stop()
