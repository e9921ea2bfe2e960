"""Webhooks: which callback URLs are allowed, and how their requests are signed.

A job may name a ``callback_url``; when it finishes, the notification service
POSTs the job as JSON there. The receiver checks the signature to know the
request is ours and recent:

    signed = f"{timestamp}.".encode() + raw_body
    expected = "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(expected, request.headers["X-Video2mp3-Signature"])
         and abs(time.time() - int(request.headers["X-Video2mp3-Timestamp"])) < 300

``verify_signature`` below is exactly that recipe. Only http(s) URLs are
accepted, and ones that reach this side's private or loopback addresses are
refused (SSRF) unless the operator allows them.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from urllib.parse import urlsplit

from common.errors import PermanentError

SIGNATURE_HEADER = "X-Video2mp3-Signature"
TIMESTAMP_HEADER = "X-Video2mp3-Timestamp"
EVENT_HEADER = "X-Video2mp3-Event"
MAX_URL_LENGTH = 2048
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidCallback(PermanentError):
    """A callback URL that may not be called."""


def check_callback_url(url: str, *, allow_private: bool) -> str:
    """Return ``url`` if it is an http(s) URL whose host we may call.

    Raises:
        InvalidCallback: saying what is wrong with it.
    """
    if len(url) > MAX_URL_LENGTH:
        raise InvalidCallback(f"callback_url is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidCallback("callback_url must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise InvalidCallback("callback_url must not carry credentials")
    if not allow_private:
        for address in resolve(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        ):
            if not address.is_global:
                raise InvalidCallback(
                    f"callback_url resolves to a private or local address ({address})"
                )
    return url


def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Return every address ``host`` resolves to.

    Raises:
        InvalidCallback: it does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InvalidCallback(f"callback_url host {host!r} does not resolve") from None
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


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
