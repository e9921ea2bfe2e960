"""API keys: long-lived credentials for scripts, scoped, revocable, shown once.

A key reads ``v2m_<id>_<secret>``: ``id`` (12 hex digits) finds the row, and the
SHA-256 of the whole key is compared with the stored one in constant time. The
secret is 256 random bits, so a slow password hash would add nothing. A key never
carries admin rights, whoever owns it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from auth_service import db
from common.errors import PermanentError
from common.tokens import InvalidToken

KEY_PREFIX = "v2m_"
SCOPES = ("jobs:read", "jobs:write")
MAX_LIVE_KEYS = 50
MAX_NAME_LENGTH = 100
MAX_EXPIRY_DAYS = 3650
# last_used_at is written at most this often per key: a busy script costs no write per call.
USE_RECORD_SECONDS = 60
_KEY = re.compile(r"v2m_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
INVALID_KEY = "The API key is unknown, revoked or expired."


class InvalidKeyRequest(PermanentError):
    """A field of a new key is unacceptable; ``code`` is the error to answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def looks_like_key(credential: str) -> bool:
    """Tell whether a bearer credential is meant as an API key rather than a token."""
    return credential.startswith(KEY_PREFIX)


def _secret_hash(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.replace(tzinfo=UTC).isoformat()


def view(key: db.ApiKey) -> dict[str, Any]:
    """Return how the API shows a key: everything but its secret."""
    return {
        "id": key.id,
        "name": key.name,
        "scopes": list(key.scopes),
        "created_at": _iso(key.created_at),
        "expires_at": _iso(key.expires_at),
        "last_used_at": _iso(key.last_used_at),
        "prefix": f"{KEY_PREFIX}{key.id}",
    }


def _checked_name(value: object) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not 0 < len(name) <= MAX_NAME_LENGTH or _CONTROL.search(name):
        raise InvalidKeyRequest(
            "invalid_name",
            f"name must be 1 to {MAX_NAME_LENGTH} characters of text without control characters.",
        )
    return name


def _checked_scopes(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not set(value) <= set(SCOPES):
        raise InvalidKeyRequest(
            "invalid_scopes", f"scopes must be a non-empty list of {', '.join(SCOPES)}."
        )
    return tuple(scope for scope in SCOPES if scope in value)


def _checked_expiry(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_EXPIRY_DAYS:
        raise InvalidKeyRequest(
            "invalid_expiry",
            f"expires_in_days must be a whole number from 1 to {MAX_EXPIRY_DAYS}, or null.",
        )
    return value


def create(user: db.User, body: dict[str, Any]) -> tuple[db.ApiKey, str]:
    """Make a key for ``user`` from a request's fields; return it and its text (shown once).

    Raises:
        InvalidKeyRequest: a field is unacceptable, or the user has too many live keys.
        TransientError: MySQL cannot be reached.
    """
    name = _checked_name(body.get("name"))
    scopes = _checked_scopes(body.get("scopes"))
    expires_in_days = _checked_expiry(body.get("expires_in_days"))
    key_id = secrets.token_hex(6)
    text = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    db.delete_expired()
    try:
        key = db.insert_api_key(
            user.id,
            key_id=key_id,
            name=name,
            scopes=scopes,
            secret_hash=_secret_hash(text),
            expires_in_days=expires_in_days,
            max_live=MAX_LIVE_KEYS,
        )
    except db.TooManyKeys:
        raise InvalidKeyRequest(
            "too_many_keys",
            f"You have {MAX_LIVE_KEYS} live API keys; revoke one before creating another.",
        ) from None
    return key, text


def identity(text: str) -> dict[str, Any]:
    """Return who a live key speaks for and what it may do, and note its use.

    Raises:
        InvalidToken: the key is malformed, unknown, wrong, revoked or expired, or its
            owner is disabled.
        TransientError: MySQL cannot be reached.
    """
    match = _KEY.fullmatch(text)
    if match is None:
        raise InvalidToken(INVALID_KEY)
    key = db.find_api_key(match.group(1))
    if (
        key is None
        or not hmac.compare_digest(key.secret_hash, _secret_hash(text))
        or key.owner_disabled
    ):
        raise InvalidToken(INVALID_KEY)
    now = datetime.now(UTC).replace(tzinfo=None)
    if key.last_used_at is None or now - key.last_used_at >= timedelta(seconds=USE_RECORD_SECONDS):
        db.touch_api_key(key.id, interval_seconds=USE_RECORD_SECONDS)
    found: dict[str, Any] = {
        "sub": key.owner_email,
        "admin": False,
        "scopes": list(key.scopes),
        "key_id": key.id,
    }
    if key.expires_at is not None:
        found["exp"] = int(key.expires_at.replace(tzinfo=UTC).timestamp())
    return found
