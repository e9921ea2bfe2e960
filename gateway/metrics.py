"""The gateway's own Prometheus metrics (the shared ones are ``common.metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
