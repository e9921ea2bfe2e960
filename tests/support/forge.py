"""Make tokens the way an attacker or a misconfigured issuer would, for rejection tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from common.tokens import jwk_thumbprint

ISSUER = "video2mp3-auth"
AUDIENCE = "video2mp3"


def new_rsa_key(bits: int = 2048) -> RSAPrivateKey:
    """Generate an RSA private key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_pem(key: PrivateKeyTypes) -> str:
    """Return ``key`` as unencrypted PKCS#8 PEM text, as a key file holds it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: RSAPrivateKey) -> bytes:
    """Return the PEM of ``key``'s public half, as published keys often are."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def claims(**changes: Any) -> dict[str, Any]:
    """Return valid claims for a 10-minute token; a change to None drops that claim."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "someone@example.com",
        "admin": False,
        "iat": now,
        "exp": now + 600,
    }
    payload.update(changes)
    return {name: value for name, value in payload.items() if value is not None}


def sign(key: RSAPrivateKey, payload: dict[str, Any], **header: Any) -> str:
    """Sign ``payload`` with RS256 and ``key``, naming the key by its thumbprint."""
    headers = {"kid": jwk_thumbprint(key.public_key()), **header}
    return jwt.encode(payload, key, algorithm="RS256", headers=headers)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: dict[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def unsigned(payload: dict[str, Any]) -> str:
    """Return an ``alg: none`` token with an empty signature."""
    return f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(payload)}."


def hs256(payload: dict[str, Any], secret: bytes, **header: Any) -> str:
    """Return an HS256 token, e.g. keyed with a public key's PEM (key confusion)."""
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT', **header})}.{_segment(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(mac)}"


def tampered(token: str, **changes: Any) -> str:
    """Return ``token`` with its payload changed and its old signature kept."""
    header, payload, signature = token.split(".")
    padded = payload + "=" * (-len(payload) % 4)
    decoded = json.loads(base64.urlsafe_b64decode(padded))
    decoded.update(changes)
    return f"{header}.{_segment(decoded)}.{signature}"


TokenMaker = Callable[[RSAPrivateKey, RSAPrivateKey, int], str]

# Tokens a verifier trusting only ``key`` must reject, each made from
# (key, a foreign key, now).
BAD_TOKENS: dict[str, TokenMaker] = {
    "garbled": lambda key, other, now: "not-a-jwt",
    "junk-segments": lambda key, other, now: "a.b.c",
    "too-long": lambda key, other, now: "a" * 9000,
    "expired": lambda key, other, now: sign(key, claims(iat=now - 7200, exp=now - 3600)),
    "issued-in-the-future": lambda key, other, now: sign(
        key, claims(iat=now + 600, exp=now + 1200)
    ),
    "not-before-in-the-future": lambda key, other, now: sign(key, claims(nbf=now + 600)),
    "another-key": lambda key, other, now: sign(other, claims()),
    "another-key-claiming-our-kid": lambda key, other, now: sign(
        other, claims(), kid=jwk_thumbprint(key.public_key())
    ),
    "alg-none": lambda key, other, now: unsigned(claims(admin=True)),
    "hs256-with-public-key": lambda key, other, now: hs256(claims(admin=True), public_pem(key)),
    "tampered-admin": lambda key, other, now: tampered(sign(key, claims()), admin=True),
    "tampered-subject": lambda key, other, now: tampered(
        sign(key, claims()), sub="admin@example.com"
    ),
    "signature-stripped": lambda key, other, now: sign(key, claims()).rsplit(".", 1)[0] + ".",
    "wrong-issuer": lambda key, other, now: sign(key, claims(iss="evil")),
    "wrong-audience": lambda key, other, now: sign(key, claims(aud="other")),
    "no-subject": lambda key, other, now: sign(key, claims(sub=None)),
    "no-expiry": lambda key, other, now: sign(key, claims(exp=None)),
    "no-issued-at": lambda key, other, now: sign(key, claims(iat=None)),
    "empty-subject": lambda key, other, now: sign(key, claims(sub="")),
    "admin-not-boolean": lambda key, other, now: sign(key, claims(admin="yes")),
}


def bad_token(name: str, key: RSAPrivateKey, other_key: RSAPrivateKey) -> str:
    """Return the bad token called ``name`` in ``BAD_TOKENS``."""
    return BAD_TOKENS[name](key, other_key, int(time.time()))
