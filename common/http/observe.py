"""What every request of an HTTP service leaves behind: its id, its metrics, its log line.

Each request carries an id, taken from a sane ``X-Request-ID`` header (so a
gateway's id follows the request into the services behind it) or made up, on
every log line written while handling it and in the response's header. Each is
counted and timed by route template, logged in one access line, and the
service's metrics are served at ``/metrics``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from common import metrics
from common.logs import log_context

access_log = logging.getLogger("video2mp3.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Ids travel into logs and other services; anything else is replaced, not echoed.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}")


def install_request_id(app: Flask) -> None:
    """Give every request of ``app`` an id, in its log lines and its response."""

    @app.before_request
    def enter_request_context() -> None:
        supplied = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = supplied if _SANE_REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
        g.request_id = request_id
        stack = contextlib.ExitStack()
        stack.enter_context(log_context(request_id=request_id))
        g.request_log_context = stack

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    @app.teardown_request
    def leave_request_context(_exc: BaseException | None) -> None:
        stack = g.pop("request_log_context", None)
        if stack is not None:
            stack.close()


def install_http_metrics(app: Flask) -> None:
    """Count, time and log every request of ``app``, and serve ``/metrics``."""

    @app.before_request
    def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def record(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        # The route template, never the raw path: ids in paths would explode the label set.
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.HTTP_REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        elapsed = time.perf_counter() - started if started is not None else 0.0
        metrics.HTTP_LATENCY.labels(endpoint, request.method).observe(elapsed)
        access_log.info(
            "%s %s %s %.1fms",
            request.method,
            request.full_path.rstrip("?"),
            response.status_code,
            elapsed * 1000,
        )
        return response

    def serve_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    app.add_url_rule("/metrics", "metrics", serve_metrics, methods=["GET"])
