"""One JSON error shape for every HTTP service.

Every error a client can see is ``{"error": "<code>", "message": "<text>"}``:
views raise ``ApiError``; werkzeug's own HTTP errors (404, 405, 413, ...) and a
dependency that is down (``TransientError`` → 503) are rendered the same way,
and anything unexpected is logged with its traceback and answered with a
plain 500, never an HTML page or a stack trace.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from common.errors import TransientError

log = logging.getLogger(__name__)

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
