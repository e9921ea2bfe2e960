"""The gateway's settings, read once from the environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.config import EgressConfig, Env, PipelineConfig, setting, shared
from gateway.quotas import Quotas

DEFAULT_MAX_CONTENT_LENGTH = 2 * 1024**3
# Each 256 KiB read of an upload's body (uploads.READ_SIZE) must arrive within this many
# seconds, or the upload is cut off with 408: a client that stalls for 30 s, or sends
# slower than about 70 kbit/s (8.7 KiB/s), lets its thread go. Slower than any phone
# network still in use, and short enough that 20 trickling clients give up their threads
# before others queue behind them; nginx's client_body_timeout (60 s) is of this order.
DEFAULT_UPLOAD_READ_TIMEOUT = 30.0
# A resumable upload (tus, /files/) not finished this many seconds after its last bytes
# arrived is removed with what it stored: a day to come back after a lost connection.
DEFAULT_RESUMABLE_UPLOAD_EXPIRY_SECONDS = 24 * 3600.0
# How often each gateway process reads auth's revocations, and how long it trusts auth's
# word on an API key: a password change, logout or revoked key bites within 30 s
# (a poll or a cache lifetime, plus a slow answer). The maxima keep that promise.
DEFAULT_REVOCATION_POLL_SECONDS = 10.0
DEFAULT_API_KEY_CACHE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Config(PipelineConfig):
    """Everything the gateway needs to run; tests build one directly."""

    auth_address: str = setting("AUTH_SVC_ADDRESS", "127.0.0.1:5000")
    # Empty: the auth service's own JWKS (see __post_init__).
    jwks_url: str = setting("JWKS_URL", "")
    jwt_issuer: str = shared("JWT_ISSUER")
    jwt_audience: str = shared("JWT_AUDIENCE")
    video_queue: str = shared("VIDEO_QUEUE")
    # The workers' queues, which the admin API lets admins name (gateway.admin).
    mp3_queue: str = shared("MP3_QUEUE")
    webhook_queue: str = shared("WEBHOOK_QUEUE")
    max_content_length: int = setting(
        "MAX_CONTENT_LENGTH", DEFAULT_MAX_CONTENT_LENGTH, read=Env.size
    )
    upload_read_timeout: float = setting(
        "UPLOAD_READ_TIMEOUT", DEFAULT_UPLOAD_READ_TIMEOUT, minimum=1.0
    )
    resumable_upload_expiry: float = setting(
        "RESUMABLE_UPLOAD_EXPIRY_SECONDS", DEFAULT_RESUMABLE_UPLOAD_EXPIRY_SECONDS, minimum=1.0
    )
    revocation_poll_seconds: float = setting(
        "REVOCATION_POLL_SECONDS", DEFAULT_REVOCATION_POLL_SECONDS, minimum=0.1, maximum=10.0
    )
    api_key_cache_seconds: float = setting(
        "API_KEY_CACHE_SECONDS", DEFAULT_API_KEY_CACHE_SECONDS, minimum=0.0, maximum=15.0
    )
    quotas: Quotas = field(default_factory=Quotas)
    public_url: str = shared("PUBLIC_URL")
    trusted_proxies: int = shared("TRUSTED_PROXIES")
    egress: EgressConfig = field(default_factory=EgressConfig)

    def __post_init__(self) -> None:
        if not self.jwks_url:
            object.__setattr__(self, "jwks_url", f"{self.auth_url}/.well-known/jwks.json")

    @property
    def auth_url(self) -> str:
        """Return the base URL of the auth service."""
        address = self.auth_address
        return address.rstrip("/") if "://" in address else f"http://{address}"
