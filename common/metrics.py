"""Prometheus metrics: every metric the services export is defined here, once.

(The Flask side, timing requests and serving ``/metrics``, is ``common.web``.)

The Flask services run under gunicorn with several worker processes; with
``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client keeps each process's values
in files there and ``/metrics`` adds them up. The workers are single processes
and serve the default registry on their health port.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set for gunicorn; see common.gunicorn

if os.environ.get(MULTIPROC_ENV):
    # In multiprocess mode a metric without labels writes its file as soon as it is
    # defined, below; gunicorn's master gets here while reading its config module.
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)

HTTP_REQUESTS = Counter(
    "video2mp3_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["endpoint", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "video2mp3_http_request_duration_seconds",
    "Time to answer an HTTP request (for downloads: until the body starts), by route template.",
    ["endpoint", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
UPLOADS = Counter(
    "video2mp3_uploads_total",
    "Uploads by outcome: accepted, rejected (bad input) or failed (a dependency was down).",
    ["outcome"],
)
UPLOAD_BYTES = Histogram(
    "video2mp3_upload_size_bytes",
    "Size of accepted uploads.",
    buckets=tuple(2**n for n in range(16, 32, 2)),  # 64 KiB .. 2 GiB
)
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
PUBLISH_FAILURES = Counter(
    "video2mp3_publish_failures_total",
    "Publishes that failed after their retries, by queue.",
    ["queue"],
)
MESSAGES_HANDLED = Counter(
    "video2mp3_messages_total",
    "Messages taken off a queue, by outcome: ack, retry or dead-letter.",
    ["queue", "outcome"],
)
QUEUE_READY = Gauge(
    "video2mp3_queue_messages_ready",
    "Messages waiting in a queue, as its consumer last saw it.",
    ["queue"],
    multiprocess_mode="liveall",
)
DEAD_LETTERS = Gauge(
    "video2mp3_dead_letters",
    "Messages waiting in a dead-letter queue",
    ["queue"],
    multiprocess_mode="liveall",
)
EMAILS = Counter(
    "video2mp3_emails_total",
    "Emails by outcome: sent, refused (permanently, by the mail server) or failed (will retry).",
    ["outcome"],
)


def registry() -> CollectorRegistry:
    """Return the registry to expose: all processes' values under gunicorn, else this one's."""
    if os.environ.get(MULTIPROC_ENV):
        collecting = CollectorRegistry()
        multiprocess.MultiProcessCollector(collecting)
        return collecting
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    """Return the current metrics in Prometheus' text format, and its content type."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


WEBHOOKS = Counter(
    "video2mp3_webhooks_total",
    "Webhook calls by outcome: delivered, refused (for good) or failed (will retry).",
    ["outcome"],
)
ORPHANS_REMOVED = Counter(
    "video2mp3_orphaned_files_removed_total",
    "Stored files no job referred to that housekeeping deleted, by kind (mp3).",
    ["kind"],
)
