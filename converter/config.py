"""The converter's settings, read once from the environment at start-up."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

from common.config import EgressConfig, PipelineConfig, listen_port, setting, shared
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
# A video no job or resumable upload names this long after its upload began is
# deleted. It must exceed the longest upload request the gateway lets run:
# MAX_CONTENT_LENGTH (2 GiB) at the read watchdog's slowest pace (256 KiB per
# UPLOAD_READ_TIMEOUT, 30 s) takes 68 h. Raise it with either of those.
ORPHANED_VIDEO_SECONDS = 3 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Config(PipelineConfig):
    """Everything the converter needs to run; tests build one directly."""

    video_queue: str = shared("VIDEO_QUEUE")
    mp3_queue: str = shared("MP3_QUEUE")
    workdir: str = setting("CONVERTER_WORKDIR", default_factory=tempfile.gettempdir)
    health_host: str = shared("HEALTH_HOST")
    health_port: int = listen_port("CONVERTER_PORT", 9101)
    # CONVERT_RETRY_DELAYS and CONVERT_RETRY_HORIZON_SECONDS.
    retry: RetryLadder = setting("CONVERT", CONVERT_RETRY, read=RetryLadder.from_env)
    startup_timeout: float = setting("STARTUP_TIMEOUT", 60.0, minimum=0.0)
    # No progress for this long means the job's worker is gone.
    stale_after: float = setting("STALE_JOB_SECONDS", 1800.0, minimum=10.0)
    # A job the gateway never marked enqueued for this long was refused or cut
    # off mid-request; far longer than a publish can take (see the gateway).
    abandoned_after: float = setting("ABANDONED_UPLOAD_SECONDS", 600.0, minimum=5.0)
    # A video that no job or resumable upload names this long after its upload began is
    # deleted by the janitor (see ORPHANED_VIDEO_SECONDS).
    orphaned_video_after: float = setting(
        "ORPHANED_VIDEO_SECONDS", ORPHANED_VIDEO_SECONDS, minimum=60.0
    )
    # Finished jobs and their files are deleted after this; 0 keeps them forever.
    retention_days: float = setting("RETENTION_DAYS", 30.0, minimum=0.0)
    janitor_interval: float = setting("JANITOR_INTERVAL_SECONDS", 60.0, minimum=0.1)
    # The longest audio a job may convert (see converter.transcode).
    max_media_seconds: float = setting("MAX_MEDIA_SECONDS", MAX_MEDIA_SECONDS, minimum=1.0)
    # A conversion this long without progress fails /health, and
    # Kubernetes restarts the wedged worker.
    stall_after: float = setting("CONVERT_STALL_SECONDS", CONVERT_STALL_SECONDS, minimum=1.0)
    # Where a video imported by URL may be fetched from (converter.fetch).
    egress: EgressConfig = field(default_factory=EgressConfig)
