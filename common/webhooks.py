"""Webhooks: how their requests are signed, and how a receiver checks them.

A job may name a ``callback_url``; when it finishes, the notification service
POSTs the job as JSON there. The receiver checks the signature to know the
request is ours and recent:

    signed = f"{timestamp}.".encode() + raw_body
    expected = "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(expected, request.headers["X-Video2mp3-Signature"])
         and abs(time.time() - int(request.headers["X-Video2mp3-Timestamp"])) < 300

``verify_signature`` below is exactly that recipe. Which URLs may be called,
and the call itself, are ``common.egress``'s.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Video2mp3-Signature"
TIMESTAMP_HEADER = "X-Video2mp3-Timestamp"
EVENT_HEADER = "X-Video2mp3-Event"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """Return the signature header value for ``body`` sent at ``timestamp``."""
    signed = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()


def verify_signature(
    secret: bytes,
    *,
    signature: str,
    timestamp: str,
    body: bytes,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Tell whether a webhook request is genuine and recent (the receiver's check)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)
