"""One wiring for every Flask service: errors, request ids, metrics, OpenAPI, health."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from flask import Flask, Response, jsonify
from werkzeug.middleware.proxy_fix import ProxyFix

from common.http.errors import install_error_handlers
from common.http.health import Check, alive, readiness
from common.http.observe import install_http_metrics, install_request_id
from common.http.openapi import install_openapi


def create_service_app(
    import_name: str,
    *,
    spec_file: Path,
    max_content_length: int | None,
    trusted_proxies: int,
    trust_forwarded_host: bool = False,
    ready_checks: Mapping[str, Check],
) -> Flask:
    """Build a Flask app with what every service shares; the caller adds its own views.

    ``trusted_proxies`` is how many proxies in front append to ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` (and, with ``trust_forwarded_host``, ``X-Forwarded-Host``):
    that many are believed, so rate limits and links see the real client.
    ``ready_checks`` are what ``/ready`` runs.
    """
    app = Flask(import_name, static_folder=None)  # assets, if any, are served by the app
    app.config["MAX_CONTENT_LENGTH"] = max_content_length
    if trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app,
            x_for=trusted_proxies,
            x_proto=trusted_proxies,
            x_host=trusted_proxies if trust_forwarded_host else 0,
        )
    install_request_id(app)
    install_error_handlers(app)
    install_http_metrics(app)
    install_openapi(app, spec_file)

    def health() -> tuple[Response, int]:
        status, body = alive()
        return jsonify(body), status

    def ready() -> tuple[Response, int]:
        status, body = readiness(ready_checks)
        return jsonify(body), status

    app.add_url_rule("/health", "health", health, methods=["GET"])
    app.add_url_rule("/ready", "ready", ready, methods=["GET"])
    return app
