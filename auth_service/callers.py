"""Who is calling: a login session (an access token that still holds) or an API key.

Routes that change an account take sessions only: an API key is answered 403
``insufficient_scope`` with ``required: "session"`` (RFC 6750 §3.1's error name),
so a leaked key can read and convert but never take over the account.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import request

from auth_service import accounts, api_keys, db
from auth_service.tokens import get_verifier
from common.http.errors import ApiError
from common.tokens import Claims, InvalidToken, bearer_token

REALM = "video2mp3"
BEARER_CHALLENGE = {"WWW-Authenticate": f'Bearer realm="{REALM}"'}


@dataclass(frozen=True, slots=True)
class Session:
    """A caller logged in with a token: its verified claims and its user as stored now."""

    claims: Claims
    user: db.User


def invalid_token(message: str) -> ApiError:
    """Return the 401 that refuses a missing, bad or revoked credential."""
    return ApiError(401, "invalid_token", message, BEARER_CHALLENGE)


def _bearer() -> str:
    try:
        return bearer_token(request.headers.get("Authorization"))
    except InvalidToken as exc:
        raise invalid_token(str(exc)) from None


def validated_identity() -> dict[str, object]:
    """Return what /validate answers for the bearer credential: token claims or key identity.

    Raises:
        ApiError: 401 ``invalid_token``, the credential is bad, expired or revoked.
        TransientError: MySQL cannot be reached.
    """
    credential = _bearer()
    try:
        if api_keys.looks_like_key(credential):
            return api_keys.identity(credential)
        claims = get_verifier().verify(credential)
        accounts.session_user(claims)
    except InvalidToken as exc:
        raise invalid_token(str(exc)) from None
    return dict(claims.payload)


def current_session() -> Session:
    """Return the caller's session; an API key is refused.

    Raises:
        ApiError: 401 ``invalid_token`` (no, bad or revoked credential) or 403
            ``insufficient_scope`` (an API key).
        TransientError: MySQL cannot be reached.
    """
    credential = _bearer()
    try:
        if api_keys.looks_like_key(credential):
            api_keys.identity(credential)  # a bad key is a 401, like a bad token
            raise ApiError(
                403,
                "insufficient_scope",
                "This needs a login session; an API key cannot do it.",
                extra={"required": "session"},
            )
        claims = get_verifier().verify(credential)
        return Session(claims, accounts.session_user(claims))
    except InvalidToken as exc:
        raise invalid_token(str(exc)) from None


def admin_session() -> Session:
    """Return the caller's session if it is an admin's.

    Raises:
        ApiError: as ``current_session``, or 403 ``forbidden`` for a non-admin.
        TransientError: MySQL cannot be reached.
    """
    session = current_session()
    # The stored flag decides: a demotion revokes the tokens that said otherwise anyway.
    if not session.user.is_admin:
        raise ApiError(403, "forbidden", "This needs an admin.")
    return session
