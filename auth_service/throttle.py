"""Login rate limits: every attempt per client IP, failed attempts per account.

The per-account limit is checked before the password is, so a locked account
costs no hashing, and it applies to unknown addresses exactly as to real ones,
so a lockout reveals nothing about who has an account. Checking and counting
a failure are two steps, so a burst of concurrent guesses may overshoot the
account limit by the burst's size; the per-client limit bounds that.

Limits use a moving window in the storage named by RATELIMIT_STORAGE_URI.
``memory://`` keeps the counts inside one process, so with several gunicorn
workers or replicas each keeps its own; deploy a shared store (``redis://...``,
which needs the ``redis`` client installed).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Iterator

import limits
from flask import Flask, current_app
from limits.errors import ConfigurationError, StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from auth_service.config import Config, parse_rate_limit
from common.errors import ConfigError, TransientError
from common.http.errors import ApiError

_EXTENSION = "auth_service.throttle"


@contextlib.contextmanager
def _storage_errors() -> Iterator[None]:
    try:
        yield
    except StorageError as exc:
        raise TransientError(f"rate limit storage unavailable: {exc}") from exc


def _account_key(email: str) -> str:
    # Hashed so the store holds no addresses and odd characters cannot collide keys.
    return hashlib.sha256(email.encode()).hexdigest()


class LoginThrottle:
    """Count login attempts and refuse them with 429 once a limit is reached."""

    def __init__(self, storage_uri: str, *, client_limit: str, account_limit: str) -> None:
        try:
            storage = storage_from_string(storage_uri, wrap_exceptions=True)
        except ConfigurationError as exc:
            raise ConfigError(f"RATELIMIT_STORAGE_URI {storage_uri!r} is unusable: {exc}") from None
        self._limiter = MovingWindowRateLimiter(storage)
        self._client_limit = parse_rate_limit("LOGIN_RATE_LIMIT_CLIENT", client_limit)
        self._account_limit = parse_rate_limit("LOGIN_RATE_LIMIT_ACCOUNT", account_limit)

    def hit_client(self, client: str, *, scope: str = "login") -> None:
        """Count one attempt from ``client`` (an IP address) in ``scope``.

        Raises:
            ApiError: 429, the client made too many attempts.
            TransientError: the rate limit storage is unavailable.
        """
        identifiers = (scope, "client", client)
        with _storage_errors():
            allowed = self._limiter.hit(self._client_limit, *identifiers)
        if not allowed:
            raise self._limited(
                self._client_limit, identifiers, "Too many attempts from this address."
            )

    def check_account(self, email: str) -> None:
        """Refuse a login to ``email`` while it has too many recent failures.

        Raises:
            ApiError: 429, the account is temporarily locked.
            TransientError: the rate limit storage is unavailable.
        """
        identifiers = ("login", "account", _account_key(email))
        with _storage_errors():
            allowed = self._limiter.test(self._account_limit, *identifiers)
        if not allowed:
            raise self._limited(
                self._account_limit,
                identifiers,
                "Too many failed logins for this account.",
            )

    def record_failure(self, email: str) -> None:
        """Count one failed login to ``email``.

        Raises:
            TransientError: the rate limit storage is unavailable.
        """
        with _storage_errors():
            self._limiter.hit(self._account_limit, "login", "account", _account_key(email))

    def _limited(
        self, item: limits.RateLimitItem, identifiers: tuple[str, ...], reason: str
    ) -> ApiError:
        with _storage_errors():
            stats = self._limiter.get_window_stats(item, *identifiers)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return ApiError(
            429,
            "rate_limited",
            f"{reason} Try again in {retry_after} seconds.",
            {"Retry-After": str(retry_after)},
        )


def init_app(app: Flask, config: Config) -> None:
    """Give ``app`` its own login throttle, so apps (and tests) share no counts."""
    app.extensions[_EXTENSION] = LoginThrottle(
        config.ratelimit_storage_uri,
        client_limit=config.login_rate_limit_client,
        account_limit=config.login_rate_limit_account,
    )


def get_throttle() -> LoginThrottle:
    """Return the current app's login throttle."""
    return current_app.extensions[_EXTENSION]
