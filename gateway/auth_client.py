"""The auth service, seen from the gateway: the only module that calls it over HTTP.

Only ``/login`` goes through here. Tokens are checked locally against auth's
published keys (``common.tokens``), so ordinary requests never call auth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests

from common.errors import TransientError

log = logging.getLogger(__name__)

# Headers of auth's answer that the client must see as they are.
PASSED_HEADERS = ("Content-Type", "Retry-After", "WWW-Authenticate")


@dataclass(frozen=True)
class AuthAnswer:
    """Auth's response to a login, to hand back to the client."""

    status: int
    body: bytes
    headers: dict[str, str]


class AuthClient:
    """Forward logins to the auth service."""

    def __init__(self, base_url: str, *, timeout: tuple[float, float] = (3.0, 20.0)) -> None:
        self._login_url = f"{base_url}/login"
        self._timeout = timeout

    def login(
        self, *, authorization: str | None, client_ip: str | None, request_id: str | None
    ) -> AuthAnswer:
        """Pass the client's Basic credentials to auth and return its answer.

        Raises:
            TransientError: auth could not be reached or answered with a server error.
        """
        headers = {"Accept": "application/json"}
        if authorization:
            headers["Authorization"] = authorization
        if client_ip:
            headers["X-Forwarded-For"] = client_ip
        if request_id:
            headers["X-Request-ID"] = request_id
        try:
            response = requests.post(self._login_url, headers=headers, timeout=self._timeout)
        except requests.RequestException as exc:
            raise TransientError(f"auth service unreachable: {exc}") from exc
        if "json" not in response.headers.get("Content-Type", ""):
            # Not auth's own JSON error: a proxy or a crashed worker answered.
            raise TransientError(f"auth service answered {response.status_code} without JSON")
        return AuthAnswer(
            status=response.status_code,
            body=response.content,
            headers={h: response.headers[h] for h in PASSED_HEADERS if h in response.headers},
        )
