"""Sign RS256 access tokens and publish the key that verifies them.

Verification lives in ``common.tokens`` because the gateway verifies the same
tokens; this module holds the private key and is the only place that signs.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from flask import Flask, current_app

from auth_service.config import Config
from common.tokens import ALGORITHM, TokenVerifier, jwk_thumbprint, public_jwk

_SIGNER = "auth_service.token_signer"
_VERIFIER = "auth_service.token_verifier"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed token and how many seconds it stays valid."""

    token: str
    expires_in: int


class TokenSigner:
    """Sign access tokens with one RSA private key."""

    def __init__(
        self, private_key: RSAPrivateKey, *, issuer: str, audience: str, ttl_seconds: int
    ) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = jwk_thumbprint(self.public_key)
        self._issuer = issuer
        self._audience = audience
        self._ttl_seconds = ttl_seconds

    def issue(
        self, subject: str, *, admin: bool, token_version: int, now: float | None = None
    ) -> IssuedToken:
        """Return a token saying ``subject`` logged in, whether they are an admin, and when.

        ``token_version`` is the user's token version now (the ``tv`` claim): raising
        the user's version revokes every token issued before.
        """
        issued_at = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            "admin": admin,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + self._ttl_seconds,
            # A unique id lets logs and the revocation list (a logout) name one token.
            "jti": uuid.uuid4().hex,
            "tv": token_version,
        }
        token = jwt.encode(
            claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.key_id}
        )
        return IssuedToken(token=token, expires_in=self._ttl_seconds)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Return the JSON Web Key Set that verifies this signer's tokens."""
        return {"keys": [public_jwk(self.public_key)]}


def init_app(app: Flask, config: Config) -> None:
    """Give ``app`` the token signer and a verifier for its own tokens."""
    signer = TokenSigner(
        config.jwt_private_key,
        issuer=config.jwt_issuer,
        audience=config.jwt_audience,
        ttl_seconds=config.jwt_ttl_seconds,
    )
    app.extensions[_SIGNER] = signer
    app.extensions[_VERIFIER] = TokenVerifier.from_public_key(
        signer.public_key, issuer=config.jwt_issuer, audience=config.jwt_audience
    )


def get_signer() -> TokenSigner:
    """Return the current app's token signer."""
    return current_app.extensions[_SIGNER]


def get_verifier() -> TokenVerifier:
    """Return the verifier for the current app's own tokens."""
    return current_app.extensions[_VERIFIER]
