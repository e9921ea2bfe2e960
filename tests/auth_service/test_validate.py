"""GET and POST /validate over real HTTP: claims for our tokens, 401 for anything else."""

from __future__ import annotations

import time

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from tests.auth_service.conftest import Account, LiveServer, bearer
from tests.support import forge

METHODS = ["GET", "POST"]
BEARER_CHALLENGE = 'Bearer realm="video2mp3"'

# Headers that carry no usable bearer token at all; bad tokens come from forge.
BAD_HEADERS = {
    "missing": None,
    "basic-scheme": "Basic dXNlcjpwYXNz",
    "bearer-without-token": "Bearer ",
    "token-without-scheme": "eyJhbGciOiJSUzI1NiJ9.e30.sig",
}


@pytest.mark.parametrize("method", METHODS)
def test_validate_returns_the_claims_of_a_login_token(
    live_server: LiveServer, admin: Account, method: str
) -> None:
    token = live_server.login(admin.email, admin.password).json()["token"]

    response = live_server.http.request(
        method, live_server.url("/validate"), headers=bearer(token), timeout=10
    )

    assert response.status_code == 200
    claims = response.json()
    assert claims["sub"] == admin.email
    assert claims["admin"] is True
    assert claims["iss"] == forge.ISSUER
    assert claims["aud"] == forge.AUDIENCE
    assert claims["exp"] > time.time()


def test_validate_accepts_a_token_within_the_clock_leeway(
    live_server: LiveServer, signing_key: RSAPrivateKey, user: Account
) -> None:
    now = int(time.time())
    token = forge.sign(signing_key, forge.claims(sub=user.email, iat=now + 5, exp=now - 5 + 600))

    assert live_server.get("/validate", headers=bearer(token)).status_code == 200


def assert_invalid_token(response: requests.Response) -> None:
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "invalid_token"
    assert body["message"]
    assert response.headers["WWW-Authenticate"] == BEARER_CHALLENGE


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(BAD_HEADERS))
def test_validate_rejects_headers_without_a_bearer_token(
    live_server: LiveServer, case: str, method: str
) -> None:
    authorization = BAD_HEADERS[case]
    headers = {} if authorization is None else {"Authorization": authorization}

    assert_invalid_token(
        live_server.http.request(method, live_server.url("/validate"), headers=headers, timeout=10)
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(forge.BAD_TOKENS))
def test_validate_rejects_bad_tokens(
    live_server: LiveServer,
    signing_key: RSAPrivateKey,
    other_key: RSAPrivateKey,
    case: str,
    method: str,
) -> None:
    token = forge.bad_token(case, signing_key, other_key)

    assert_invalid_token(
        live_server.http.request(
            method, live_server.url("/validate"), headers=bearer(token), timeout=10
        )
    )


def test_validate_names_the_reason(live_server: LiveServer, signing_key: RSAPrivateKey) -> None:
    expired = forge.sign(signing_key, forge.claims(exp=int(time.time()) - 3600))

    response = live_server.get("/validate", headers=bearer(expired))

    assert response.json()["message"] == "The token has expired."
