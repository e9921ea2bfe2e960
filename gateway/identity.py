"""Who is calling, and what they may do: a login token or an API key, and its scopes.

A login token (a JWT) is checked locally with auth's published keys and then
against the process's revocation list (``gateway.revocations``): two dict lookups,
no call to auth, but for a token of a deleted user's address, which auth judges.
An API key (``Bearer v2m_<id>_<secret>``) is checked by auth's ``/validate``. Auth's
answers, refusals too, are kept ``api_key_cache_seconds`` in the process, by the
credential's SHA-256 (never the credential itself): a revoked key stops working
within that time and a slow answer.

A login session may do everything its user may. An API key may do only what its
scopes name, on the routes that declare a scope with ``requires_scope``; every
other route (``requires_session``, and any that declares nothing, such as the admin
API) refuses keys with 403 ``insufficient_scope``. A key never carries admin rights.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from common.cache import TtlCache
from common.http.errors import ApiError
from common.tokens import Claims, InvalidToken, bearer_token
from gateway.auth_client import AuthClient
from gateway.revocations import ASK_AUTH, REVOKED, RevocationList
from gateway.services import services

JOBS_READ = "jobs:read"
JOBS_WRITE = "jobs:write"
SESSION = "session"  # what a route that no key may use requires
SCOPES = (JOBS_READ, JOBS_WRITE)
API_KEY_PREFIX = "v2m_"
API_KEY_PATTERN = re.compile(r"v2m_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
# Keys remembered per process; a caller cycling through made-up keys evicts the oldest.
API_KEY_CACHE_SIZE = 10_000
EXTENSION = "video2mp3.gateway.identity"
REALM = 'Bearer realm="video2mp3"'

View = TypeVar("View", bound=Callable[..., Any])


class Verdicts:
    """Auth's answers on credentials (API keys, doubtful tokens), kept ``ttl`` s by SHA-256."""

    def __init__(
        self,
        validate: Callable[[str], dict[str, Any] | None],
        *,
        ttl: float,
        size: int = API_KEY_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._validate = validate
        self._verdicts: TtlCache[dict[str, Any] | None] = TtlCache(size, ttl, clock=clock)

    def answer(self, credential: str) -> dict[str, Any] | None:
        """Return what auth's ``/validate`` says of the credential, or None if it refuses it.

        Raises:
            TransientError: auth could not be asked (and no verdict is held).
        """
        digest = hashlib.sha256(credential.encode("utf-8")).hexdigest()
        held, answer = self._verdicts.get(digest)
        if not held:
            answer = self._validate(credential)
            self._verdicts.put(digest, answer)
        return answer


def _key_claims(answer: dict[str, Any]) -> Claims | None:
    """Return the claims of a key auth accepted; None if its answer is not one."""
    subject, scopes, key_id = answer.get("sub"), answer.get("scopes"), answer.get("key_id")
    if not isinstance(subject, str) or not subject or not isinstance(scopes, list):
        return None
    now = int(time.time())
    return Claims(
        subject=subject,
        admin=False,  # never, even for an admin's key
        issued_at=now,
        expires_at=now,
        payload=answer,
        scopes=frozenset(scope for scope in scopes if scope in SCOPES),
        key_id=key_id if isinstance(key_id, str) else None,
    )


@dataclass(frozen=True)
class Identity:
    """What ``current_user`` checks against, one per app."""

    revocations: RevocationList
    verdicts: Verdicts


def init_app(
    app: Flask, auth: AuthClient, *, poll_seconds: float, api_key_cache_seconds: float
) -> None:
    """Give ``app`` its revocation list and key cache; its first request starts the polling."""
    app.extensions[EXTENSION] = Identity(
        revocations=RevocationList(auth.revocations, poll_seconds=poll_seconds),
        verdicts=Verdicts(auth.validate, ttl=api_key_cache_seconds),
    )
    app.before_request(_keep_polling)


def _keep_polling() -> None:
    current_app.extensions[EXTENSION].revocations.keep_polling()


def current_user() -> Claims:
    """Return the verified claims of the request's bearer token or API key.

    Raises:
        ApiError: 401 when the token is missing, invalid or revoked, or the key is
            refused; 403 ``insufficient_scope`` when a key may not use this route.
        TransientError: auth's keys could not be fetched, or auth could not check a key.
    """
    claims = g.get("claims")
    if claims is None:
        claims = _authenticate(request.headers.get("Authorization"))
        g.claims = claims
    if claims.scopes is not None:
        required = g.get("required_scope", SESSION)
        if required not in claims.scopes:
            raise _insufficient_scope(required)
    return claims


def _authenticate(header: str | None) -> Claims:
    identity: Identity = current_app.extensions[EXTENSION]
    try:
        token = bearer_token(header)
        if token.startswith(API_KEY_PREFIX):
            return _key_holder(token, identity.verdicts)
        claims = services().verifier.verify(token)
    except InvalidToken as exc:
        code = "missing_token" if not header else "invalid_token"
        challenge = REALM + ("" if not header else ', error="invalid_token"')
        raise ApiError(401, code, str(exc), headers={"WWW-Authenticate": challenge}) from None
    status = identity.revocations.status(claims)
    if status == REVOKED or (status == ASK_AUTH and identity.verdicts.answer(token) is None):
        raise ApiError(
            401,
            "token_revoked",
            "This session has ended: log in again.",
            headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
        )
    return claims


def _key_holder(key: str, verdicts: Verdicts) -> Claims:
    """Return the claims of an API key auth accepts.

    Raises:
        InvalidToken: the key is malformed, or auth refuses it.
    """
    if not API_KEY_PATTERN.fullmatch(key):
        raise InvalidToken("The API key is malformed.")
    answer = verdicts.answer(key)
    claims = None if answer is None else _key_claims(answer)
    if claims is None:
        raise InvalidToken("The API key is unknown, revoked or expired.")
    return claims


def _insufficient_scope(required: str) -> ApiError:
    message = (
        "API keys cannot do this: log in."
        if required == SESSION
        else f"This API key lacks the {required} scope."
    )
    return ApiError(
        403,
        "insufficient_scope",
        message,
        headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{required}"'},
        extra={"required": required},
    )


def requires_scope(scope: str) -> Callable[[View], View]:
    """Let API keys holding ``scope`` use the decorated view (login sessions always may)."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.required_scope = scope
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def requires_session(view: View) -> View:
    """Refuse API keys on the decorated view, which needs a login session."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.required_scope = SESSION
        current_user()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
