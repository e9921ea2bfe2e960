"""Webhooks: signed POSTs of finished jobs to their callback URLs.

Each call is a signed POST of the finished job as JSON (see ``common.webhooks``
for the signature and the receiver's check), made through the egress guard
(``common.egress``): it decides which addresses may be reached, pins the one it
checked, follows no redirect and keeps one deadline for the whole call.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from common.egress import EgressGuard
from common.errors import PermanentError
from common.webhooks import EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

log = logging.getLogger(__name__)


class WebhookSender:
    """POST signed job events to callback URLs."""

    def __init__(self, secret: str | None, *, guard: EgressGuard, timeout: float) -> None:
        self._secret = secret.encode() if secret else None
        self._guard = guard
        self._timeout = timeout

    def send(self, url: str, event: str, payload: Mapping[str, Any]) -> int:
        """Deliver one event within the timeout and return the receiver's status code.

        Raises:
            PermanentError: the URL may not be called, no secret is configured, or the
                receiver refused the event for good (a 3xx or 4xx answer).
            TransientError: the receiver is unreachable, did not answer in time or
                failed (5xx, 408, 425, 429).
        """
        if self._secret is None:
            raise PermanentError("no WEBHOOK_SECRET is configured, so webhooks cannot be signed")
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "video2mp3-webhooks/1",
            EVENT_HEADER: event,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        answer = self._guard.request("POST", url, body=body, headers=headers, timeout=self._timeout)
        return answer.status
