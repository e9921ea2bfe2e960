"""Verify the RS256 JSON Web Tokens that auth_service signs.

auth_service checks tokens with its own public key (``/validate``); the gateway
checks them with the keys auth publishes at ``/.well-known/jwks.json``, fetched
once, cached, and fetched again when a token names a key id it has not seen
(a rotated key), so a request costs no call to auth. Either way the algorithm
is pinned to RS256: the token's own ``alg`` header never chooses how it is
checked, which rules out ``alg: none`` and HS256-with-the-public-key forgeries.

Every way a token can be wrong ends in one exception, ``InvalidToken``, whose
message is safe to show to the client. A JWKS endpoint that cannot be reached
is not the token's fault and raises ``TransientError`` instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from common.cache import TtlCache
from common.errors import PermanentError, TransientError

ALGORITHM = "RS256"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "iss", "aud")
DEFAULT_LEEWAY_SECONDS = 30.0
# Our tokens are well under 1 KiB; refusing huge ones bounds the work an
# anonymous caller can make us do before the signature check.
MAX_TOKEN_LENGTH = 8192
# Verified tokens kept per process: a page polling its jobs sends the same token again
# and again, and checking it each time was a large part of such a request's CPU:
# docs/performance.md, "What was profiled and changed", row "Verified tokens cached".
VERIFIED_CACHE_SIZE = 1024
VERIFIED_CACHE_SECONDS = 60.0

# The first matching class wins, so subclasses come before their bases.
_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "The token has expired."),
    (jwt.ImmatureSignatureError, "The token is not valid yet."),
    (jwt.InvalidAudienceError, "The token is meant for another audience."),
    (jwt.InvalidIssuerError, "The token comes from another issuer."),
    (jwt.InvalidSignatureError, "The token's signature does not verify."),
    (jwt.InvalidAlgorithmError, "The token must be signed with RS256."),
    (jwt.DecodeError, "The token is not a well-formed JWT."),
)


class InvalidToken(PermanentError):
    """A bearer token is missing, malformed, expired or not signed by the issuer."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token (or an API key auth vouched for) says about its bearer."""

    subject: str
    admin: bool
    issued_at: int
    expires_at: int
    payload: Mapping[str, Any]
    # None for a login session, which may do everything its user may; an API key's
    # scopes otherwise (``jobs:read``, ``jobs:write``).
    scopes: frozenset[str] | None = None
    key_id: str | None = None


def bearer_token(authorization: str | None) -> str:
    """Return the token from an ``Authorization: Bearer <token>`` header value.

    Raises:
        InvalidToken: the header is missing or does not carry a bearer token.
    """
    if not authorization:
        raise InvalidToken("A bearer token is required.")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken("The Authorization header must be 'Bearer <token>'.")
    return token


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def jwk_thumbprint(public_key: RSAPublicKey) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of an RSA public key, used as its ``kid``."""
    numbers = public_key.public_numbers()
    # RFC 7638: the required members only, in lexicographic order, no whitespace.
    canonical = json.dumps(
        {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(public_key: RSAPublicKey) -> dict[str, str]:
    """Return the JWKS entry that publishes ``public_key`` for RS256 signatures."""
    numbers = public_key.public_numbers()
    return {
        "kty": "RSA",
        "use": "sig",
        "alg": ALGORITHM,
        "kid": jwk_thumbprint(public_key),
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }


KeyResolver = Callable[[str | None], Any]
"""Return the verification key for a token's ``kid`` header (which may be absent)."""


class _JwksKeys:
    """Resolve key ids against a JWKS URL, cached, refetched on an unknown id."""

    def __init__(
        self, url: str, *, timeout: float, cache_seconds: float, refresh_cooldown: float
    ) -> None:
        self._url = url
        self._client = jwt.PyJWKClient(
            url,
            cache_jwk_set=True,
            lifespan=cache_seconds,
            timeout=timeout,
            cooldown_duration=refresh_cooldown,
        )

    def __call__(self, kid: str | None) -> Any:
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The token does not name its signing key (kid).")
        try:
            signing_key = self._client.match_kid(self._client.get_signing_keys(), kid)
        except (jwt.PyJWTError, ValueError) as exc:
            # The key set itself could not be had: the issuer is down or broken.
            raise TransientError(f"cannot fetch signing keys from {self._url}: {exc}") from exc
        if signing_key is None:
            # Perhaps the issuer rotated its key since we cached the set.
            try:
                signing_key = self._client.get_signing_key(kid)
            except jwt.PyJWKClientConnectionError as exc:
                raise TransientError(f"cannot fetch signing keys from {self._url}: {exc}") from exc
            except (jwt.PyJWTError, ValueError):
                raise InvalidToken("The token was signed by an unknown key.") from None
        if signing_key.algorithm_name != ALGORITHM:
            raise InvalidToken("The token's key is not an RS256 key.")
        return signing_key.key


class _VerifiedTokens:
    """Tokens already verified, so a client polling with one token pays for RSA once.

    An entry is used only while its token is unexpired (with the verifier's leeway) and
    for at most ``ttl`` seconds after it was checked, no longer than the key set itself
    is cached, so a key withdrawn from the JWKS stops being honoured as soon as it would
    without this cache. Keyed by the whole token string: any change to it is a miss.
    """

    def __init__(self, size: int, ttl: float) -> None:
        self._entries: TtlCache[Claims] = TtlCache(size, ttl, clock=time.time)

    def get(self, token: str, leeway: float) -> Claims | None:
        found, claims = self._entries.get(token)
        if not found or claims is None or time.time() > claims.expires_at + leeway:
            return None
        return claims

    def put(self, token: str, claims: Claims) -> None:
        self._entries.put(token, claims)


class TokenVerifier:
    """Check a token's RS256 signature, lifetime, issuer and audience, and return its claims."""

    def __init__(
        self,
        resolve_key: KeyResolver,
        *,
        issuer: str,
        audience: str,
        leeway: float = DEFAULT_LEEWAY_SECONDS,
        cache_size: int = VERIFIED_CACHE_SIZE,
        cache_seconds: float = VERIFIED_CACHE_SECONDS,
    ) -> None:
        self._resolve_key = resolve_key
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._verified = _VerifiedTokens(cache_size, cache_seconds) if cache_size else None

    @classmethod
    def from_public_key(
        cls,
        public_key: RSAPublicKey,
        *,
        issuer: str,
        audience: str,
        leeway: float = DEFAULT_LEEWAY_SECONDS,
    ) -> TokenVerifier:
        """Build a verifier that trusts exactly one public key."""
        return cls(lambda _kid: public_key, issuer=issuer, audience=audience, leeway=leeway)

    @classmethod
    def from_jwks_url(
        cls,
        url: str,
        *,
        issuer: str,
        audience: str,
        leeway: float = DEFAULT_LEEWAY_SECONDS,
        timeout: float = 5.0,
        cache_seconds: float = 300.0,
        refresh_cooldown: float = 30.0,
    ) -> TokenVerifier:
        """Build a verifier that trusts the keys published at a JWKS URL.

        The key set is fetched on first use and kept for ``cache_seconds``; a
        token naming an unknown ``kid`` triggers one refetch, at most once per
        ``refresh_cooldown`` seconds so forged kids cannot hammer the issuer.
        """
        keys = _JwksKeys(
            url, timeout=timeout, cache_seconds=cache_seconds, refresh_cooldown=refresh_cooldown
        )
        return cls(
            keys,
            issuer=issuer,
            audience=audience,
            leeway=leeway,
            cache_seconds=min(VERIFIED_CACHE_SECONDS, cache_seconds),
        )

    def verify(self, token: str) -> Claims:
        """Return the claims of a valid token.

        Raises:
            InvalidToken: the token is malformed, expired, not yet valid, for
                another issuer or audience, or not signed by a trusted key.
            TransientError: the JWKS endpoint could not be reached.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("The token is too long.")
        if self._verified is not None:
            cached = self._verified.get(token, self._leeway)
            if cached is not None:
                return cached
        claims = self._verify(token)
        if self._verified is not None:
            self._verified.put(token, claims)
        return claims

    def _verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("The token is not a well-formed JWT.") from None
        # Checked before any key lookup so a forged header costs no JWKS fetch;
        # jwt.decode below enforces the same pin on its own.
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("The token must be signed with RS256.")
        key = self._resolve_key(header.get("kid"))
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS), "enforce_minimum_key_length": True},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"The token lacks the {exc.claim!r} claim.") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(_reason(exc)) from None
        return _claims(payload)


def _reason(exc: jwt.PyJWTError) -> str:
    for error_class, reason in _REASONS:
        if isinstance(exc, error_class):
            return reason
    return "The token is invalid."


def _claims(payload: dict[str, Any]) -> Claims:
    subject = payload["sub"]
    admin = payload.get("admin", False)
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("The token's subject is empty.")
    if not isinstance(admin, bool):
        raise InvalidToken("The token's admin claim must be true or false.")
    return Claims(
        subject=subject,
        admin=admin,
        issued_at=int(payload["iat"]),
        expires_at=int(payload["exp"]),
        payload=payload,
    )
