"""Each HTTP service describes itself: its OpenAPI document and Swagger UI, served locally."""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
import yaml
from flask import Flask, Response, jsonify, send_from_directory

from common.http.errors import ApiError

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
