"""Prometheus metrics the services share (HTTP, queues), and how each process serves its own.

Each service defines its own metrics in its ``metrics`` module (``gateway.metrics``,
``converter.metrics``, ``notification.metrics``), so a process registers only what
it exports. (The Flask side, timing requests and serving ``/metrics``, is
``common.http.observe``.)

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
