"""Webhooks: the only module that calls users' callback URLs.

Each call is a signed POST of the finished job as JSON (see ``common.webhooks``
for the signature and the receiver's check). Redirects are not followed, so a
callback cannot bounce the request to an address the URL check refused.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import requests

from common.errors import PermanentError, TransientError
from common.webhooks import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    InvalidCallback,
    check_callback_url,
    sign,
)

log = logging.getLogger(__name__)

# Answers that mean "try again later"; any other 4xx is the receiver saying no for good.
RETRYABLE_STATUSES = frozenset({408, 425, 429})


class WebhookSender:
    """POST signed job events to callback URLs."""

    def __init__(self, secret: str | None, *, allow_private: bool, timeout: float) -> None:
        self._secret = secret.encode() if secret else None
        self._allow_private = allow_private
        self._timeout = timeout

    def send(self, url: str, event: str, payload: Mapping[str, Any]) -> int:
        """Deliver one event and return the receiver's status code.

        Raises:
            PermanentError: the URL may not be called, no secret is configured, or the
                receiver refused the event for good (a 3xx or 4xx answer).
            TransientError: the receiver is unreachable, timed out or failed (5xx, 429).
        """
        if self._secret is None:
            raise PermanentError("no WEBHOOK_SECRET is configured, so webhooks cannot be signed")
        try:
            check_callback_url(url, allow_private=self._allow_private)
        except InvalidCallback as exc:
            raise PermanentError(str(exc)) from None
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "video2mp3-webhooks/1",
            EVENT_HEADER: event,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        try:
            response = requests.post(
                url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise TransientError(f"webhook receiver unreachable: {exc}") from exc
        status = response.status_code
        if status >= 500 or status in RETRYABLE_STATUSES:
            raise TransientError(f"webhook receiver answered {status}")
        if status >= 300:
            raise PermanentError(f"webhook receiver refused the event with {status}")
        return status
