"""The auth service, seen from the gateway: the only module that calls it over HTTP.

Logins, single sign-on, API-key management, logout, password changes and account
deletion are forwarded to auth and its answers handed back as they are. Login tokens are
checked locally against auth's published keys (``common.tokens``), so ordinary
requests never call auth; an API key is checked by auth's ``/validate`` (cached
by ``gateway.identity``), and the revocation list is polled from
``/revocations`` (``gateway.revocations``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import requests

from common.errors import TransientError

log = logging.getLogger(__name__)

# Headers of auth's answer that the client must see as they are.
PASSED_HEADERS = ("Cache-Control", "Content-Type", "Retry-After", "WWW-Authenticate")


@dataclass(frozen=True)
class AuthAnswer:
    """Auth's response to a forwarded request, to hand back to the client."""

    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        """Return the answer's body as JSON (auth always answers JSON when it has a body)."""
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Navigation:
    """Auth's answer to a browser's navigation (single sign-on): a redirect, most often."""

    status: int
    body: bytes
    headers: dict[str, str]
    cookies: list[str]  # Set-Cookie values, each as auth sent it


# Headers of auth's answer to a navigation that the browser must see as they are.
NAVIGATION_HEADERS = ("Cache-Control", "Content-Type", "Location", "Referrer-Policy", "Retry-After")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a forwarded request comes from: their credentials and where they are."""

    authorization: str | None
    client_ip: str | None
    request_id: str | None

    def headers(self) -> dict[str, str]:
        """Return the request headers that carry these to auth."""
        headers = {"Accept": "application/json"}
        if self.authorization:
            headers["Authorization"] = self.authorization
        if self.client_ip:
            headers["X-Forwarded-For"] = self.client_ip
        if self.request_id:
            headers["X-Request-ID"] = self.request_id
        return headers


class AuthClient:
    """Forward account requests to the auth service; check keys; read revocations."""

    def __init__(self, base_url: str, *, timeout: tuple[float, float] = (3.0, 20.0)) -> None:
        self._base_url = base_url
        self._timeout = timeout
        # Looked up on the request path of API-key calls and by the poller: kept short.
        self._quick_timeout = (min(timeout[0], 2.0), min(timeout[1], 5.0))

    def login(
        self, *, authorization: str | None, client_ip: str | None, request_id: str | None
    ) -> AuthAnswer:
        """Pass the client's Basic credentials to auth and return its answer.

        Raises:
            TransientError: auth could not be reached or answered without JSON.
        """
        return self.forward("POST", "/login", Caller(authorization, client_ip, request_id))

    def forward(
        self, method: str, path: str, caller: Caller, *, json_body: Any = None
    ) -> AuthAnswer:
        """Send ``method path`` to auth on the caller's behalf and return its answer.

        Raises:
            TransientError: auth could not be reached or answered without JSON (a proxy
                or a crashed worker, not auth's own error).
        """
        try:
            response = requests.request(
                method,
                f"{self._base_url}{path}",
                headers=caller.headers(),
                json=json_body,
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise TransientError(f"auth service unreachable: {exc}") from exc
        if response.content and "json" not in response.headers.get("Content-Type", ""):
            raise TransientError(f"auth service answered {response.status_code} without JSON")
        if response.status_code >= 500:
            log.warning("auth answered %s to %s %s", response.status_code, method, path)
        return AuthAnswer(
            status=response.status_code,
            body=response.content,
            headers={h: response.headers[h] for h in PASSED_HEADERS if h in response.headers},
        )

    def navigate(
        self,
        path: str,
        caller: Caller,
        *,
        params: list[tuple[str, str]],
        cookies: dict[str, str],
    ) -> Navigation:
        """Pass a browser's GET of ``path`` to auth, its redirect back unfollowed.

        Raises:
            TransientError: auth could not be reached.
        """
        try:
            response = requests.get(
                f"{self._base_url}{path}",
                params=params,
                headers=caller.headers(),
                cookies=cookies,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise TransientError(f"auth service unreachable: {exc}") from exc
        return Navigation(
            status=response.status_code,
            body=response.content,
            headers={h: response.headers[h] for h in NAVIGATION_HEADERS if h in response.headers},
            cookies=response.raw.headers.getlist("Set-Cookie"),
        )

    def validate(self, credential: str) -> dict[str, Any] | None:
        """Return what auth's ``/validate`` says of a key or token, or None if it refuses it.

        Raises:
            TransientError: auth could not be reached or answered neither 200 nor 401.
        """
        response = self._get("/validate", headers={"Authorization": f"Bearer {credential}"})
        if response.status_code == 401:
            return None
        if response.status_code != 200:
            raise TransientError(f"auth answered {response.status_code} to a key check")
        return _json_of(response)

    def revocations(self, after: int) -> dict[str, Any]:
        """Return auth's revocations with an id above ``after``: ``{"revocations", "next"}``.

        Raises:
            TransientError: auth could not be reached or did not answer 200 with JSON.
        """
        response = self._get("/revocations", params={"after": after})
        if response.status_code != 200:
            raise TransientError(f"auth answered {response.status_code} to /revocations")
        return _json_of(response)

    def _get(self, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = requests.get(
                f"{self._base_url}{path}", timeout=self._quick_timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise TransientError(f"auth service unreachable: {exc}") from exc
        if "json" not in response.headers.get("Content-Type", ""):
            raise TransientError(f"auth service answered {response.status_code} without JSON")
        return response


def _json_of(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise TransientError(f"auth answered malformed JSON: {exc}") from exc
