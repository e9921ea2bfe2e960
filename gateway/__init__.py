"""The gateway: the public API for uploads, downloads and jobs, in front of the workers."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from common.jobs import JobStore
from common.logs import configure_logging
from common.messaging import Publisher
from common.storage import Storage
from common.tokens import TokenVerifier
from common.web import (
    install_error_handlers,
    install_http_metrics,
    install_openapi,
    install_request_id,
)
from gateway import views, web
from gateway.auth_client import AuthClient
from gateway.config import Config
from gateway.services import EXTENSION, Services
from gateway.watchdog import ReadWatchdog


def create_app(config: Config | None = None) -> Flask:
    """Build the gateway app from ``config``, or from the environment when None.

    Nothing connects here: MongoDB, RabbitMQ and auth's key set are reached on
    first use, so the app starts even while a dependency is still coming up.

    Raises:
        ConfigError: the environment holds a missing or invalid setting.
    """
    if config is None:
        config = Config.from_env()
    configure_logging("gateway", config.logging)
    # No built-in /static route: the web blueprint serves the page's assets itself.
    app = Flask(__name__, static_folder=None)
    # Werkzeug refuses to read past this, a second guard behind the upload's own check.
    app.config["MAX_CONTENT_LENGTH"] = config.max_content_length
    if config.trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app,
            x_for=config.trusted_proxies,
            x_proto=config.trusted_proxies,
            x_host=config.trusted_proxies,
        )
    storage = Storage(config.mongo)
    app.extensions[EXTENSION] = Services(
        config=config,
        storage=storage,
        jobs=JobStore(storage.client, config.mongo),
        publisher=Publisher(config.rabbit, name="gateway"),
        verifier=TokenVerifier.from_jwks_url(
            config.jwks_url, issuer=config.jwt_issuer, audience=config.jwt_audience
        ),
        auth=AuthClient(config.auth_url),
        upload_watchdog=ReadWatchdog(config.upload_read_timeout),
    )
    install_request_id(app)
    install_error_handlers(app)
    install_http_metrics(app)
    install_openapi(app, Path(__file__).with_name("openapi.yaml"))
    app.register_blueprint(views.bp)
    app.register_blueprint(web.bp)
    return app
