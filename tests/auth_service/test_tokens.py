"""Token signing and the published key set, checked the way the gateway will use them."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from auth_service.tokens import TokenSigner
from common.tokens import InvalidToken, TokenVerifier, jwk_thumbprint
from tests.auth_service.conftest import Account, LiveServer
from tests.support.forge import AUDIENCE, ISSUER


@pytest.fixture
def signer(signing_key: RSAPrivateKey) -> TokenSigner:
    return TokenSigner(signing_key, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=900)


def test_issue_signs_the_claims_with_a_lifetime(
    signer: TokenSigner, signing_key: RSAPrivateKey
) -> None:
    issued = signer.issue("alice@example.com", admin=True, token_version=3, now=1_000_000_000)

    claims = jwt.decode(
        issued.token,
        signing_key.public_key(),
        algorithms=["RS256"],
        audience=AUDIENCE,
        options={"verify_exp": False},
    )
    assert issued.expires_in == 900
    assert claims["sub"] == "alice@example.com"
    assert claims["admin"] is True
    assert claims["iss"] == ISSUER
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (1_000_000_000,) * 2 + (1_000_000_900,)
    assert len(claims["jti"]) == 32
    assert claims["tv"] == 3
    assert jwt.get_unverified_header(issued.token)["kid"] == signer.key_id


def test_issued_tokens_have_distinct_ids(signer: TokenSigner) -> None:
    first = jwt.decode(
        signer.issue("a@example.com", admin=False, token_version=0).token,
        options={"verify_signature": False},
    )
    second = jwt.decode(
        signer.issue("a@example.com", admin=False, token_version=0).token,
        options={"verify_signature": False},
    )

    assert first["jti"] != second["jti"]


def test_jwks_endpoint_publishes_the_signing_key(
    live_server: LiveServer, signing_key: RSAPrivateKey
) -> None:
    response = live_server.get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert "max-age" in response.headers["Cache-Control"]
    (key,) = response.json()["keys"]
    assert key["kty"] == "RSA"
    assert key["use"] == "sig"
    assert key["alg"] == "RS256"
    assert key["kid"] == jwk_thumbprint(signing_key.public_key())
    assert "d" not in key  # never the private exponent


def test_jwks_key_verifies_a_login_token(live_server: LiveServer, user: Account) -> None:
    token = live_server.login(user.email, user.password).json()["token"]
    jwks = live_server.get("/.well-known/jwks.json").json()

    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER)

    assert claims["sub"] == user.email


def test_gateway_style_verifier_trusts_login_tokens_via_jwks_url(
    live_server: LiveServer, user: Account, other_key: RSAPrivateKey
) -> None:
    verifier = TokenVerifier.from_jwks_url(
        live_server.url("/.well-known/jwks.json"), issuer=ISSUER, audience=AUDIENCE
    )
    token = live_server.login(user.email, user.password).json()["token"]

    claims = verifier.verify(token)

    assert claims.subject == user.email
    assert claims.admin is False
    foreign = TokenSigner(other_key, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=60)
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier.verify(foreign.issue(user.email, admin=True, token_version=0).token)
