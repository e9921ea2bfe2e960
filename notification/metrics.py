"""The notification service's own Prometheus metrics (the shared ones are ``common.metrics``)."""

from __future__ import annotations

from prometheus_client import Counter

EMAILS = Counter(
    "video2mp3_emails_total",
    "Emails by outcome: sent, refused (permanently, by the mail server) or failed (will retry).",
    ["outcome"],
)
WEBHOOKS = Counter(
    "video2mp3_webhooks_total",
    "Webhook calls by outcome: delivered, refused (for good) or failed (will retry).",
    ["outcome"],
)
