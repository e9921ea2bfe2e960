"""The auth service: users in MySQL, logins, and the RS256 tokens the gateway trusts."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

from auth_service import admin, cli, db, oidc, oidc_views, passwords, throttle, tokens, views
from auth_service import config as config_module
from auth_service.config import Config
from common.http.app import create_service_app
from common.logs import configure_logging

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
    app = create_service_app(
        __name__,
        spec_file=Path(__file__).with_name("openapi.yaml"),
        max_content_length=MAX_CONTENT_LENGTH,
        # Each trusted proxy appends one X-Forwarded-For entry; trust that many, so the
        # rate limits count the real client and not the gateway.
        trusted_proxies=config.trusted_proxies,
        ready_checks={"mysql": db.ping},
    )
    config_module.init_app(app, config)
    db.init_app(app)
    passwords.init_app(app, config.argon2)
    tokens.init_app(app, config)
    oidc.init_app(app, config.oidc)
    throttle.init_app(app, config)
    cli.init_app(app)
    app.register_blueprint(views.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(oidc_views.bp)
    return app
