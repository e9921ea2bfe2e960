"""The gateway's settings, read once from the environment at start-up."""

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
    redact_url,
)
from common.errors import ConfigError
from gateway.quotas import Quotas

DEFAULT_MAX_CONTENT_LENGTH = 2 * 1024**3
# Each 256 KiB read of an upload's body (uploads.READ_SIZE) must arrive within this many
# seconds, or the upload is cut off with 408: a client that stalls for 30 s, or sends
# slower than about 70 kbit/s (8.7 KiB/s), lets its thread go. Slower than any phone
# network still in use, and short enough that 20 trickling clients give up their threads
# before others queue behind them; nginx's client_body_timeout (60 s) is of this order.
DEFAULT_UPLOAD_READ_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the gateway needs to run; tests build one directly."""

    mongo: MongoConfig
    rabbit: RabbitConfig
    auth_address: str = "127.0.0.1:5000"
    jwks_url: str = ""
    jwt_issuer: str = "video2mp3-auth"
    jwt_audience: str = "video2mp3"
    video_queue: str = "video"
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH
    upload_read_timeout: float = DEFAULT_UPLOAD_READ_TIMEOUT
    quotas: Quotas = field(default_factory=Quotas)
    public_url: str = "http://127.0.0.1:8000"
    trusted_proxies: int = 0
    egress: EgressConfig = field(default_factory=EgressConfig)
    environment: str = "development"
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self) -> None:
        if not self.jwks_url:
            object.__setattr__(self, "jwks_url", f"{self.auth_url}/.well-known/jwks.json")

    @property
    def auth_url(self) -> str:
        """Return the base URL of the auth service."""
        address = self.auth_address
        return address.rstrip("/") if "://" in address else f"http://{address}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read the configuration from the environment and validate it.

        Raises:
            ConfigError: a value is malformed, or production runs with placeholder secrets.
        """
        env = Env(environ)
        public_url = env.str("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
        if not public_url.startswith(("http://", "https://")):
            raise ConfigError(f"PUBLIC_URL must be an http(s) URL, got {redact_url(public_url)!r}")
        return cls(
            **pipeline_settings(env),
            auth_address=env.str("AUTH_SVC_ADDRESS", "127.0.0.1:5000"),
            jwks_url=env.str("JWKS_URL", ""),
            jwt_issuer=env.str("JWT_ISSUER", "video2mp3-auth"),
            jwt_audience=env.str("JWT_AUDIENCE", "video2mp3"),
            video_queue=env.str("VIDEO_QUEUE", "video"),
            max_content_length=env.size("MAX_CONTENT_LENGTH", DEFAULT_MAX_CONTENT_LENGTH),
            upload_read_timeout=env.float(
                "UPLOAD_READ_TIMEOUT", DEFAULT_UPLOAD_READ_TIMEOUT, minimum=1.0
            ),
            quotas=_quotas(env),
            public_url=public_url,
            trusted_proxies=env.int("TRUSTED_PROXIES", 0, minimum=0, maximum=10),
            egress=EgressConfig.from_env(env),
        )


def _quotas(env: Env) -> Quotas:
    """Read QUOTA_STORAGE_BYTES, QUOTA_ACTIVE_JOBS and QUOTA_UPLOADS_PER_MINUTE (0: unlimited)."""
    default = Quotas()
    stored = env.size("QUOTA_STORAGE_BYTES", default.stored_bytes or 0)
    active = env.int("QUOTA_ACTIVE_JOBS", default.active_jobs or 0, minimum=0)
    rate = env.int("QUOTA_UPLOADS_PER_MINUTE", default.uploads_per_minute or 0, minimum=0)
    return Quotas(
        stored_bytes=stored or None, active_jobs=active or None, uploads_per_minute=rate or None
    )
