"""TokenVerifier, bearer parsing and JWK helpers, with a static key and a JWKS server."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicNumbers

from common.errors import TransientError
from common.tokens import (
    InvalidToken,
    TokenVerifier,
    bearer_token,
    jwk_thumbprint,
    public_jwk,
)
from devstack.servers import free_port
from tests.support import forge
from tests.support.forge import AUDIENCE, ISSUER

# RFC 7638 §3.1: this key's SHA-256 thumbprint is the spec's worked example.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
    "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
    "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _uint(b64url: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(b64url + "=" * (-len(b64url) % 4)), "big")


@pytest.fixture(scope="module")
def key() -> RSAPrivateKey:
    return forge.new_rsa_key()


@pytest.fixture(scope="module")
def rotated_key() -> RSAPrivateKey:
    return forge.new_rsa_key()


@pytest.fixture
def verifier(key: RSAPrivateKey) -> TokenVerifier:
    return TokenVerifier.from_public_key(key.public_key(), issuer=ISSUER, audience=AUDIENCE)


# -- helpers ------------------------------------------------------------------


def test_jwk_thumbprint_matches_rfc_7638_example() -> None:
    public_key = RSAPublicNumbers(e=_uint("AQAB"), n=_uint(RFC7638_N)).public_key()

    assert jwk_thumbprint(public_key) == RFC7638_THUMBPRINT


def test_public_jwk_round_trips_through_pyjwt(key: RSAPrivateKey) -> None:
    entry = public_jwk(key.public_key())

    assert set(entry) == {"kty", "use", "alg", "kid", "n", "e"}
    assert entry["kid"] == jwk_thumbprint(key.public_key())
    loaded = jwt.PyJWK.from_dict(entry)
    assert loaded.key.public_numbers() == key.public_key().public_numbers()


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer   xyz ", "xyz"), (" BEARER t", "t")],
)
def test_bearer_token_reads_the_token(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic abc", "Token abc"])
def test_bearer_token_rejects_other_headers(header: str | None) -> None:
    with pytest.raises(InvalidToken):
        bearer_token(header)


# -- static key -----------------------------------------------------------------


def test_verify_returns_typed_claims(verifier: TokenVerifier, key: RSAPrivateKey) -> None:
    payload = forge.claims(sub="a@example.com", admin=True, jti="abc")

    claims = verifier.verify(forge.sign(key, payload))

    assert claims.subject == "a@example.com"
    assert claims.admin is True
    assert claims.issued_at == payload["iat"]
    assert claims.expires_at == payload["exp"]
    assert claims.payload["jti"] == "abc"


def test_verify_treats_a_missing_admin_claim_as_false(
    verifier: TokenVerifier, key: RSAPrivateKey
) -> None:
    assert verifier.verify(forge.sign(key, forge.claims(admin=None))).admin is False


# Each case is made when its test runs (from the time then), never at collection: a
# long suite would otherwise reach a "not yet valid" token's start time first.
@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (lambda now: {"exp": now - 3600, "iat": now - 7200}, "expired"),
        (lambda now: {"exp": now - 31}, "expired"),
        (lambda now: {"iat": now + 120, "exp": now + 900}, "not valid yet"),
        (lambda now: {"nbf": now + 120}, "not valid yet"),
        (lambda now: {"iss": "someone-else"}, "another issuer"),
        (lambda now: {"aud": "another-service"}, "another audience"),
        (lambda now: {"aud": None}, "'aud'"),
        (lambda now: {"iss": None}, "'iss'"),
        (lambda now: {"sub": None}, "'sub'"),
        (lambda now: {"exp": None}, "'exp'"),
        (lambda now: {"iat": None}, "'iat'"),
        (lambda now: {"sub": ""}, "subject is empty"),
        (lambda now: {"sub": 42}, "invalid"),
        (lambda now: {"admin": "true"}, "admin claim"),
        (lambda now: {"exp": "tomorrow"}, "well-formed"),
    ],
)
def test_verify_rejects_bad_claims(
    verifier: TokenVerifier, key: RSAPrivateKey, changes, reason: str
) -> None:
    payload = forge.claims(**changes(int(time.time())))
    with pytest.raises(InvalidToken, match=reason):
        verifier.verify(forge.sign(key, payload))


def test_verify_allows_small_clock_skew(verifier: TokenVerifier, key: RSAPrivateKey) -> None:
    now = int(time.time())

    assert verifier.verify(forge.sign(key, forge.claims(iat=now + 10, exp=now - 10 + 600)))
    assert verifier.verify(forge.sign(key, forge.claims(iat=now - 700, exp=now - 10)))


@pytest.mark.parametrize("case", list(forge.BAD_TOKENS))
def test_verify_rejects_bad_tokens(
    verifier: TokenVerifier, key: RSAPrivateKey, rotated_key: RSAPrivateKey, case: str
) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(forge.bad_token(case, key, rotated_key))


def test_a_verified_token_is_not_checked_again(key: RSAPrivateKey) -> None:
    lookups = []

    def resolve(kid: str | None):
        lookups.append(kid)
        return key.public_key()

    verifier = TokenVerifier(resolve, issuer=ISSUER, audience=AUDIENCE)
    token = forge.sign(key, forge.claims(sub="a@example.com"))

    assert verifier.verify(token) == verifier.verify(token)
    assert len(lookups) == 1
    with pytest.raises(InvalidToken):  # any other string, e.g. a tampered one, is checked
        verifier.verify(forge.tampered(token, sub="b@example.com"))


def test_a_cached_token_still_expires(key: RSAPrivateKey) -> None:
    verifier = TokenVerifier.from_public_key(
        key.public_key(), issuer=ISSUER, audience=AUDIENCE, leeway=0
    )
    now = int(time.time())
    token = forge.sign(key, forge.claims(iat=now, exp=now + 1))
    assert verifier.verify(token).subject

    time.sleep(max(0.0, now + 1.05 - time.time()))

    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


# -- JWKS URL -----------------------------------------------------------------------


class JwksServer:
    """Serve a mutable JWKS over HTTP and count the fetches."""

    def __init__(self) -> None:
        self.keys: list[RSAPrivateKey] = []
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps({"keys": [public_jwk(k.public_key()) for k in owner.keys]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/.well-known/jwks.json"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def jwks_server(key: RSAPrivateKey) -> Iterator[JwksServer]:
    server = JwksServer()
    server.keys = [key]
    yield server
    server.stop()


def jwks_verifier(url: str, *, refresh_cooldown: float = 0.0) -> TokenVerifier:
    return TokenVerifier.from_jwks_url(
        url, issuer=ISSUER, audience=AUDIENCE, timeout=2, refresh_cooldown=refresh_cooldown
    )


def test_jwks_verifier_fetches_once_and_caches(jwks_server: JwksServer, key: RSAPrivateKey) -> None:
    verifier = jwks_verifier(jwks_server.url)

    for _ in range(3):
        assert verifier.verify(forge.sign(key, forge.claims())).subject

    assert jwks_server.fetches == 1


def test_jwks_verifier_refetches_for_a_rotated_key(
    jwks_server: JwksServer, key: RSAPrivateKey, rotated_key: RSAPrivateKey
) -> None:
    verifier = jwks_verifier(jwks_server.url)
    verifier.verify(forge.sign(key, forge.claims()))
    jwks_server.keys = [rotated_key, key]

    claims = verifier.verify(forge.sign(rotated_key, forge.claims(sub="new@example.com")))

    assert claims.subject == "new@example.com"
    assert jwks_server.fetches == 2


def test_jwks_verifier_bounds_refetches_for_unknown_kids(
    jwks_server: JwksServer, key: RSAPrivateKey, rotated_key: RSAPrivateKey
) -> None:
    verifier = jwks_verifier(jwks_server.url, refresh_cooldown=60)
    verifier.verify(forge.sign(key, forge.claims()))

    for _ in range(3):
        with pytest.raises(InvalidToken, match="unknown key"):
            verifier.verify(forge.sign(rotated_key, forge.claims()))

    assert jwks_server.fetches == 1


def test_jwks_verifier_rejects_tokens_without_kid(
    jwks_server: JwksServer, key: RSAPrivateKey
) -> None:
    token = jwt.encode(forge.claims(), key, algorithm="RS256")

    with pytest.raises(InvalidToken, match="kid"):
        jwks_verifier(jwks_server.url).verify(token)


def test_jwks_verifier_checks_alg_before_fetching(
    jwks_server: JwksServer, key: RSAPrivateKey
) -> None:
    verifier = jwks_verifier(jwks_server.url)

    with pytest.raises(InvalidToken, match="RS256"):
        verifier.verify(forge.hs256(forge.claims(), forge.public_pem(key), kid="x"))

    assert jwks_server.fetches == 0


def test_jwks_verifier_reports_an_unreachable_issuer_as_transient(key: RSAPrivateKey) -> None:
    verifier = jwks_verifier(f"http://127.0.0.1:{free_port()}/.well-known/jwks.json")

    with pytest.raises(TransientError, match="signing keys"):
        verifier.verify(forge.sign(key, forge.claims()))
