"""Who is calling: the bearer token, checked locally with auth's published keys."""

from __future__ import annotations

from flask import g, request

from common.http.errors import ApiError
from common.tokens import Claims, InvalidToken, bearer_token
from gateway.services import services


def current_user() -> Claims:
    """Return the verified claims of the request's bearer token.

    Raises:
        ApiError: 401 when the token is missing or invalid.
        TransientError: auth's keys could not be fetched.
    """
    claims = g.get("claims")
    if claims is not None:
        return claims
    header = request.headers.get("Authorization")
    try:
        claims = services().verifier.verify(bearer_token(header))
    except InvalidToken as exc:
        code = "missing_token" if not header else "invalid_token"
        challenge = 'Bearer realm="video2mp3"' + ("" if not header else ', error="invalid_token"')
        raise ApiError(401, code, str(exc), headers={"WWW-Authenticate": challenge}) from None
    g.claims = claims
    return claims
