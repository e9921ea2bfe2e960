"""The HTTP edge every Flask service shares: one JSON error shape and request ids.

Every error a client can see is ``{"error": "<code>", "message": "<text>"}``:
views raise ``ApiError``; werkzeug's own HTTP errors (404, 405, 413, ...) and a
dependency that is down (``TransientError`` → 503) are rendered the same way,
and anything unexpected is logged with its traceback and answered with a
plain 500, never an HTML page or a stack trace.

Each request carries an id, taken from a sane ``X-Request-ID`` header (so a
gateway's id follows the request into the services behind it) or made up, on
every log line written while handling it and in the response's header.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import swagger_ui_bundle
import yaml
from flask import Flask, Response, g, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from common import metrics
from common.errors import TransientError
from common.logs import log_context

log = logging.getLogger(__name__)
access_log = logging.getLogger("video2mp3.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Ids travel into logs and other services; anything else is replaced, not echoed.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}")
# Headers werkzeug's HTML error response carries that a JSON body replaces.
_BODY_HEADERS = frozenset({"content-type", "content-length"})
TRANSIENT_RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """An error a view raises to answer with a given status and JSON body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        # Fields added to the body beside error and message, e.g. a job's status on a 409.
        self.extra = dict(extra or {})


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """Build the JSON error response every service answers with."""
    response = jsonify({**(extra or {}), "error": code, "message": message})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _http_error_code(exc: HTTPException) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")


def install_error_handlers(app: Flask) -> None:
    """Render every error ``app`` can raise as JSON in the shared shape."""

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers, exc.extra)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException) -> Response:
        # Keep what werkzeug says beyond the body, such as Allow on a 405.
        headers = {
            name: value for name, value in exc.get_headers() if name.lower() not in _BODY_HEADERS
        }
        return error_response(
            exc.code or 500, _http_error_code(exc), exc.description or "", headers
        )

    @app.errorhandler(TransientError)
    def handle_transient_error(exc: TransientError) -> Response:
        log.warning("answering 503: %s", exc)
        return error_response(
            503,
            "service_unavailable",
            "A service this request needs is unavailable; try again shortly.",
            {"Retry-After": str(TRANSIENT_RETRY_AFTER_SECONDS)},
        )

    @app.errorhandler(Exception)
    def handle_unexpected_error(exc: Exception) -> Response:
        # The request's edge: log the bug with its traceback, tell the client nothing.
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return error_response(500, "internal_error", "The server failed to handle the request.")


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


_STATIC = Path(__file__).resolve().parent / "static"
_DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)


def install_openapi(app: Flask, spec_file: Path) -> None:
    """Serve the service's OpenAPI document at ``/openapi.json`` and Swagger UI at ``/docs``.

    The document is read once, here, so a broken file stops the start instead of a request.
    """
    spec = yaml.safe_load(spec_file.read_text())
    swagger_dir = Path(swagger_ui_bundle.swagger_ui_path)
    assets = {
        "swagger-ui.css": swagger_dir,
        "swagger-ui-bundle.js": swagger_dir,
        "docs.js": _STATIC,
    }

    def openapi_json() -> Response:
        return jsonify(spec)

    def docs() -> Response:
        response = send_from_directory(_STATIC, "docs.html")
        response.headers["Content-Security-Policy"] = _DOCS_CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def docs_asset(name: str) -> Response:
        if name not in assets:
            raise ApiError(404, "not_found", "No such file.")
        response = send_from_directory(assets[name], name, max_age=3600)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    app.add_url_rule("/openapi.json", "openapi", openapi_json, methods=["GET"])
    app.add_url_rule("/docs", "docs", docs, methods=["GET"])
    app.add_url_rule("/docs/assets/<name>", "docs_asset", docs_asset, methods=["GET"])
