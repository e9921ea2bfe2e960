"""The converter's own Prometheus metrics (the shared ones are ``common.metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_FINISHED = Counter(
    "video2mp3_jobs_finished_total",
    "Jobs that reached a final status (done or failed).",
    ["status"],
)
CONVERSION_SECONDS = Histogram(
    "video2mp3_conversion_seconds",
    "Wall time of one ffmpeg conversion, by mode (reencode or copy).",
    ["mode"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
CONVERSIONS_ACTIVE = Gauge(
    "video2mp3_conversions_active",
    "Conversions running right now.",
    multiprocess_mode="livesum",
)
ORPHANS_REMOVED = Counter(
    "video2mp3_orphaned_files_removed_total",
    "Stored files no job referred to that housekeeping deleted, by kind (mp3, video).",
    ["kind"],
)
