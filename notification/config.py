"""The notification service's settings, read once from the environment at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from common.config import (
    EgressConfig,
    Env,
    LoggingConfig,
    MongoConfig,
    RabbitConfig,
    pipeline_settings,
    worker_settings,
)
from common.errors import ConfigError
from common.retry import RetryLadder

SECURITY_MODES = ("none", "starttls", "ssl")
# An email or webhook that could not go out is tried again after 10 s, 30 s, 1 min,
# 5 min, 15 min, 30 min, then every hour, for at least a day: 31 attempts, each
# waiting in the broker, not in a worker. Mail servers retry for days; a day covers
# any outage an operator notices and fixes, and dead letters can be replayed after.
NOTIFY_RETRY = RetryLadder(delays=(10, 30, 60, 300, 900, 1800, 3600), horizon=86400)


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """How to reach the mail server."""

    host: str = "127.0.0.1"
    port: int = 1025
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    security: str = "none"
    mail_from: str = "video2mp3@localhost"
    timeout: float = 15.0

    @classmethod
    def from_env(cls, env: Env) -> SmtpConfig:
        """Read SMTP_HOST/PORT/USER/PASSWORD/SECURITY/TIMEOUT and MAIL_FROM."""
        security = env.choice("SMTP_SECURITY", "none", SECURITY_MODES)
        config = cls(
            host=env.str("SMTP_HOST", "127.0.0.1"),
            port=env.int("SMTP_PORT", 465 if security == "ssl" else 1025, minimum=1, maximum=65535),
            user=env.optional("SMTP_USER"),
            password=env.optional("SMTP_PASSWORD"),
            security=security,
            mail_from=env.str("MAIL_FROM", "video2mp3@localhost"),
            timeout=env.float("SMTP_TIMEOUT", 15.0, minimum=1.0),
        )
        if config.user and not config.password:
            raise ConfigError("SMTP_USER is set but SMTP_PASSWORD is not")
        return config


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the notification service needs to run; tests build one directly."""

    mongo: MongoConfig
    rabbit: RabbitConfig
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    mp3_queue: str = "mp3"
    webhook_queue: str = "webhook"
    public_url: str = "http://127.0.0.1:8000"
    health_host: str = "127.0.0.1"
    health_port: int = 9102
    retry: RetryLadder = NOTIFY_RETRY
    webhook_secret: str | None = field(default=None, repr=False)
    egress: EgressConfig = field(default_factory=EgressConfig)
    webhook_timeout: float = 10.0
    webhook_concurrency: int = 8
    webhook_host_concurrency: int = 2
    claim_lease: float = 120.0
    environment: str = "development"
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read the configuration from the environment and validate it.

        Raises:
            ConfigError: a value is malformed, or production runs with placeholder secrets.
        """
        env = Env(environ)
        smtp = SmtpConfig.from_env(env)
        webhook_secret = env.optional("WEBHOOK_SECRET")
        secrets = {"WEBHOOK_SECRET": webhook_secret}
        if smtp.user:
            secrets["SMTP_PASSWORD"] = smtp.password
        return cls(
            **pipeline_settings(env, secrets=secrets),
            **worker_settings(env, port_variable="NOTIFICATION_PORT", default_port=9102),
            smtp=smtp,
            mp3_queue=env.str("MP3_QUEUE", "mp3"),
            webhook_queue=env.str("WEBHOOK_QUEUE", "webhook"),
            public_url=env.str("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
            retry=RetryLadder.from_env(env, "NOTIFY", NOTIFY_RETRY),
            webhook_secret=webhook_secret,
            egress=EgressConfig.from_env(env),
            # One deadline for a whole call: connect, send, and the answer.
            webhook_timeout=env.float("WEBHOOK_TIMEOUT", 10.0, minimum=0.5),
            # Webhook calls in flight at once, and at most this many to one host.
            webhook_concurrency=env.int("WEBHOOK_CONCURRENCY", 8, minimum=1, maximum=64),
            webhook_host_concurrency=env.int("WEBHOOK_HOST_CONCURRENCY", 2, minimum=1),
            claim_lease=env.float("NOTIFY_CLAIM_LEASE_SECONDS", 120.0, minimum=1.0),
        )
