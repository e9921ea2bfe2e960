"""The auth service: users in MySQL, logins, and the RS256 tokens the gateway trusts."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from auth_service import cli, db, passwords, throttle, tokens, views
from auth_service import config as config_module
from auth_service.config import Config
from common.logs import configure_logging
from common.web import (
    install_error_handlers,
    install_http_metrics,
    install_openapi,
    install_request_id,
)

# Requests carry a Basic header or a small JSON document, never uploads.
MAX_CONTENT_LENGTH = 64 * 1024


def create_app(config: Config | None = None) -> Flask:
    """Build the auth service app from ``config``, or from the environment when None.

    Nothing connects here: MySQL is reached per request.

    Raises:
        ConfigError: the environment holds a missing or invalid setting.
    """
    if config is None:
        config = Config.from_env()
    configure_logging("auth", config.logging)
    # The connector narrates its plugin loading at INFO on every connection.
    logging.getLogger("mysql.connector").setLevel(logging.WARNING)
    app = Flask(__name__, static_folder=None)  # an API: no static files to serve
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    if config.trusted_proxies:
        # Each trusted proxy appends one X-Forwarded-For entry; trust that many,
        # so the rate limits count the real client and not the gateway.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=config.trusted_proxies, x_proto=config.trusted_proxies
        )
    config_module.init_app(app, config)
    install_request_id(app)
    install_error_handlers(app)
    install_http_metrics(app)
    install_openapi(app, Path(__file__).with_name("openapi.yaml"))
    db.init_app(app)
    passwords.init_app(app, config.argon2)
    tokens.init_app(app, config)
    throttle.init_app(app, config)
    cli.init_app(app)
    app.register_blueprint(views.bp)
    return app
