"""The gateway: the public API for uploads, downloads and jobs, in front of the workers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import Flask

from common.http.app import create_service_app
from common.jobs import JobStore
from common.logs import configure_logging
from common.messaging import Publisher
from common.storage import Storage
from common.tokens import TokenVerifier
from gateway import accounts, admin_system, admin_users, identity, imports, sso, tus, views, web
from gateway.auth_client import AuthClient
from gateway.config import Config
from gateway.intake import Intake
from gateway.quotas import QuotaOverrides
from gateway.resumable import ResumableUploads
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
    storage = Storage(config.mongo)
    jobs = JobStore(storage.client, config.mongo)
    publisher = Publisher(config.rabbit, name="gateway")
    app = create_service_app(
        __name__,
        spec_file=Path(__file__).with_name("openapi.yaml"),
        # Werkzeug refuses to read past this, a second guard behind the upload's own check.
        max_content_length=config.max_content_length,
        trusted_proxies=config.trusted_proxies,
        trust_forwarded_host=True,
        ready_checks={"mongodb": storage.ping, "rabbitmq": publisher.check},
    )
    app.extensions[EXTENSION] = Services(
        config=config,
        storage=storage,
        jobs=jobs,
        publisher=publisher,
        verifier=TokenVerifier.from_jwks_url(
            config.jwks_url, issuer=config.jwt_issuer, audience=config.jwt_audience
        ),
        auth=AuthClient(config.auth_url),
        upload_watchdog=ReadWatchdog(config.upload_read_timeout),
        intake=Intake(
            storage=storage,
            jobs=jobs,
            publisher=publisher,
            video_queue=config.video_queue,
            quotas=config.quotas,
            overrides=QuotaOverrides(storage.client, config.mongo),
        ),
        resumable=ResumableUploads(
            storage,
            jobs,
            expiry=timedelta(seconds=config.resumable_upload_expiry),
            # A writer renews its lock with each chunk it stores: a few reads' worth of
            # the watchdog's deadline, so a request that died lets go of it soon.
            lease=timedelta(seconds=config.upload_read_timeout * 6),
        ),
    )
    # Expired resumable uploads go with their bytes whether or not anyone uploads again.
    app.before_request(app.extensions[EXTENSION].resumable.keep_sweeping)
    identity.init_app(
        app,
        app.extensions[EXTENSION].auth,
        poll_seconds=config.revocation_poll_seconds,
        api_key_cache_seconds=config.api_key_cache_seconds,
    )
    app.register_blueprint(views.bp)
    app.register_blueprint(tus.bp)
    app.register_blueprint(imports.bp)
    app.register_blueprint(accounts.bp)
    app.register_blueprint(sso.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(admin_users.bp)
    app.register_blueprint(admin_system.bp)
    return app
