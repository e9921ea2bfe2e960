"""The notification service's settings, read once from the environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.config import (
    EgressConfig,
    Env,
    PipelineConfig,
    Settings,
    given,
    listen_port,
    setting,
    shared,
)
from common.errors import ConfigError
from common.retry import RetryLadder

SECURITY_MODES = ("none", "starttls", "ssl")
# The port of SMTP over TLS from the first byte, the default when SMTP_SECURITY=ssl.
SMTPS_PORT = 465
# An email or webhook that could not go out is tried again after 10 s, 30 s, 1 min,
# 5 min, 15 min, 30 min, then every hour, for at least a day: 31 attempts, each
# waiting in the broker, not in a worker. Mail servers retry for days; a day covers
# any outage an operator notices and fixes, and dead letters can be replayed after.
# Longer than one send can take: a claim older than this belonged to a worker that died
# mid-send, and its email (or webhook) is sent again.
CLAIM_LEASE_SECONDS = 120.0
NOTIFY_RETRY = RetryLadder(delays=(10, 30, 60, 300, 900, 1800, 3600), horizon=86400)


@dataclass(frozen=True, slots=True)
class SmtpConfig(Settings):
    """How to reach the mail server."""

    host: str = setting("SMTP_HOST", "127.0.0.1")
    # SMTPS_PORT instead when security is ssl and no port is given.
    port: int = setting("SMTP_PORT", 1025, minimum=1, maximum=65535)
    user: str | None = setting("SMTP_USER", None)
    password: str | None = setting("SMTP_PASSWORD", None, secret=True)
    security: str = setting("SMTP_SECURITY", "none", choices=SECURITY_MODES)
    mail_from: str = setting("MAIL_FROM", "video2mp3@localhost")
    timeout: float = setting("SMTP_TIMEOUT", 15.0, minimum=1.0)

    @classmethod
    def settle(cls, env: Env, values: dict[str, Any]) -> None:
        """Default the port to SMTPS_PORT for ssl; refuse a user without a password.

        Raises:
            ConfigError: SMTP_USER is set but SMTP_PASSWORD is not.
        """
        if values["security"] == "ssl" and not given(env, cls, "port"):
            values["port"] = SMTPS_PORT
        if values["user"] and not values["password"]:
            raise ConfigError("SMTP_USER is set but SMTP_PASSWORD is not")


@dataclass(frozen=True, slots=True)
class Config(PipelineConfig):
    """Everything the notification service needs to run; tests build one directly."""

    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    mp3_queue: str = shared("MP3_QUEUE")
    webhook_queue: str = shared("WEBHOOK_QUEUE")
    public_url: str = shared("PUBLIC_URL")
    health_host: str = shared("HEALTH_HOST")
    health_port: int = listen_port("NOTIFICATION_PORT", 9102)
    # NOTIFY_RETRY_DELAYS and NOTIFY_RETRY_HORIZON_SECONDS.
    retry: RetryLadder = setting("NOTIFY", NOTIFY_RETRY, read=RetryLadder.from_env)
    webhook_secret: str | None = setting("WEBHOOK_SECRET", None, secret=True)
    egress: EgressConfig = field(default_factory=EgressConfig)
    # One deadline for a whole call: connect, send, and the answer.
    webhook_timeout: float = setting("WEBHOOK_TIMEOUT", 10.0, minimum=0.5)
    # Webhook calls in flight at once, and at most this many to one host.
    webhook_concurrency: int = setting("WEBHOOK_CONCURRENCY", 8, minimum=1, maximum=64)
    webhook_host_concurrency: int = setting("WEBHOOK_HOST_CONCURRENCY", 2, minimum=1)
    claim_lease: float = setting("NOTIFY_CLAIM_LEASE_SECONDS", CLAIM_LEASE_SECONDS, minimum=1.0)

    @classmethod
    def secrets(cls, values: dict[str, Any]) -> dict[str, str | None]:
        """Return the webhook signing secret, and the mail password when a user logs in."""
        smtp = values["smtp"]
        secrets = {"WEBHOOK_SECRET": values["webhook_secret"]}
        if smtp.user:
            secrets["SMTP_PASSWORD"] = smtp.password
        return secrets
