"""The converter's settings, read once from the environment at start-up."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from common.config import (
    Env,
    LoggingConfig,
    MongoConfig,
    RabbitConfig,
    pipeline_settings,
    worker_settings,
)
from common.retry import RetryLadder
from converter.transcode import MAX_MEDIA_SECONDS

# ffmpeg reports progress every 0.5 s while it works; five minutes without any
# is 600 missed reports, longer than reading a whole 2 GiB upload from a slow
# disk before the first audio (a badly interleaved file), so it means wedged.
CONVERT_STALL_SECONDS = 300.0
# A conversion that failed for a passing reason (MongoDB or the broker away, a
# failover) is tried again after 5 s, 15 s, 30 s, 1 min, 2 min, then every 5 min,
# for at least an hour: 18 attempts. The waits are in the broker, not the worker.
CONVERT_RETRY = RetryLadder(delays=(5, 15, 30, 60, 120, 300), horizon=3600)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the converter needs to run; tests build one directly."""

    mongo: MongoConfig
    rabbit: RabbitConfig
    video_queue: str = "video"
    mp3_queue: str = "mp3"
    workdir: str = field(default_factory=tempfile.gettempdir)
    health_host: str = "127.0.0.1"
    health_port: int = 9101
    retry: RetryLadder = CONVERT_RETRY
    startup_timeout: float = 60.0
    stale_after: float = 1800.0
    abandoned_after: float = 600.0
    retention_days: float = 30.0
    janitor_interval: float = 60.0
    max_media_seconds: float = MAX_MEDIA_SECONDS
    stall_after: float = CONVERT_STALL_SECONDS
    environment: str = "development"
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read the configuration from the environment and validate it.

        Raises:
            ConfigError: a value is malformed, or production runs with placeholder secrets.
        """
        env = Env(environ)
        return cls(
            **pipeline_settings(env),
            **worker_settings(env, port_variable="CONVERTER_PORT", default_port=9101),
            video_queue=env.str("VIDEO_QUEUE", "video"),
            mp3_queue=env.str("MP3_QUEUE", "mp3"),
            workdir=env.str("CONVERTER_WORKDIR", tempfile.gettempdir()),
            retry=RetryLadder.from_env(env, "CONVERT", CONVERT_RETRY),
            startup_timeout=env.float("STARTUP_TIMEOUT", 60.0, minimum=0.0),
            # No progress for this long means the job's worker is gone.
            stale_after=env.float("STALE_JOB_SECONDS", 1800.0, minimum=10.0),
            # A job the gateway never marked enqueued for this long was refused or cut
            # off mid-request; far longer than a publish can take (see the gateway).
            abandoned_after=env.float("ABANDONED_UPLOAD_SECONDS", 600.0, minimum=5.0),
            # Finished jobs and their files are deleted after this; 0 keeps them forever.
            retention_days=env.float("RETENTION_DAYS", 30.0, minimum=0.0),
            janitor_interval=env.float("JANITOR_INTERVAL_SECONDS", 60.0, minimum=0.1),
            # The longest audio a job may convert (see converter.transcode).
            max_media_seconds=env.float("MAX_MEDIA_SECONDS", MAX_MEDIA_SECONDS, minimum=1.0),
            # A conversion this long without progress fails /health, and
            # Kubernetes restarts the wedged worker.
            stall_after=env.float("CONVERT_STALL_SECONDS", CONVERT_STALL_SECONDS, minimum=1.0),
        )
