"""POST /login over real HTTP: tokens for good credentials, one 401 for every bad one."""

from __future__ import annotations

import base64
from collections.abc import Callable

import argon2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from flask import Flask

from auth_service import db
from common.tokens import jwk_thumbprint
from tests.auth_service.conftest import Account, LiveServer
from tests.support.forge import AUDIENCE, ISSUER

INVALID_CREDENTIALS = {"error": "invalid_credentials", "message": "Invalid email or password."}
BASIC_CHALLENGE = 'Basic realm="video2mp3"'


def decode(token: str, key: RSAPrivateKey) -> dict:
    return jwt.decode(token, key.public_key(), algorithms=["RS256"], audience=AUDIENCE)


def test_login_returns_a_bearer_token_for_the_user(
    live_server: LiveServer, user: Account, signing_key: RSAPrivateKey
) -> None:
    response = live_server.login(user.email, user.password)

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert response.headers["Cache-Control"] == "no-store"
    claims = decode(body["token"], signing_key)
    assert claims["sub"] == user.email
    assert claims["admin"] is False
    assert claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] == 3600
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "RS256"
    assert header["kid"] == jwk_thumbprint(signing_key.public_key())


def test_login_token_says_admin_only_for_admins(
    live_server: LiveServer, admin: Account, signing_key: RSAPrivateKey
) -> None:
    response = live_server.login(admin.email, admin.password)

    assert response.status_code == 200
    assert decode(response.json()["token"], signing_key)["admin"] is True


def test_login_takes_the_email_in_any_case_with_spaces(
    live_server: LiveServer, user: Account, signing_key: RSAPrivateKey
) -> None:
    response = live_server.login("  USER@Example.com ", user.password)

    assert response.status_code == 200
    assert decode(response.json()["token"], signing_key)["sub"] == "user@example.com"


@pytest.mark.parametrize(
    "password",
    ["pa:ss:wo:rd", "pässwörd ✓ 🎧", "x' OR '1'='1' --", 'quote"backslash\\', "p" * 1024],
    ids=["colons", "unicode", "sql", "quotes", "longest"],
)
def test_login_accepts_any_password_characters(
    live_server: LiveServer, make_user: Callable[..., Account], password: str
) -> None:
    account = make_user("odd@example.com", password)

    assert live_server.login(account.email, password).status_code == 200


def test_unknown_user_and_wrong_password_get_the_same_answer(
    live_server: LiveServer, user: Account
) -> None:
    unknown = live_server.login("nobody@example.com", user.password)
    wrong = live_server.login(user.email, "wrong password")

    for response in (unknown, wrong):
        assert response.status_code == 401
        assert response.json() == INVALID_CREDENTIALS
        assert response.headers["WWW-Authenticate"] == BASIC_CHALLENGE
        assert response.headers["Content-Type"] == "application/json"
    assert unknown.content == wrong.content


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("' OR 1=1 --", "anything"),
        ("user@example.com' --", "anything"),
        ("user@example.com", "' OR '1'='1"),
        ('" OR ""="', '" OR ""="'),
        ("user@example.com; DROP TABLE users; --", "x"),
        ("a" * 255, "x"),
        ("user@example.com", "p" * 1025),
        ("", "x"),
        ("user@example.com", ""),
    ],
    ids=[
        "sql-email",
        "sql-comment",
        "sql-password",
        "sql-quotes",
        "sql-drop",
        "long-email",
        "long-password",
        "empty-email",
        "empty-password",
    ],
)
def test_bad_credentials_are_rejected_as_data(
    live_server: LiveServer, user: Account, app: Flask, email: str, password: str
) -> None:
    response = live_server.login(email, password)

    assert response.status_code == 401
    assert response.json() == INVALID_CREDENTIALS
    # The table and the user survive whatever the credentials said.
    with app.app_context():
        assert db.find_user(user.email) is not None
    assert live_server.login(user.email, user.password).status_code == 200


def test_sql_metacharacters_in_a_real_address_work(
    live_server: LiveServer, make_user: Callable[..., Account]
) -> None:
    account = make_user("o'brien+x@example.com", "it's a secret")

    assert live_server.login("o'brien+x@example.com", "it's a secret").status_code == 200
    assert live_server.login("o'brien+x@example.com", "' OR '1'='1").status_code == 401
    assert account.email == "o'brien+x@example.com"


def test_login_without_credentials_asks_for_basic(live_server: LiveServer) -> None:
    response = live_server.post("/login")

    assert response.status_code == 401
    assert response.json()["error"] == "missing_credentials"
    assert response.headers["WWW-Authenticate"] == BASIC_CHALLENGE


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer some.jwt.token",
        "Basic",
        "Basic %%%garbled%%%",
        _basic(b"user@example.com"),
        _basic(b"\xff\xfeuser@example.com:pw"),
        _basic(b"user@example.com:\xe9t\xe9"),
    ],
    ids=["bearer", "no-payload", "garbled", "no-colon", "not-utf8-email", "latin1-password"],
)
def test_malformed_basic_credentials_are_a_bad_request(
    live_server: LiveServer, authorization: str
) -> None:
    response = live_server.post("/login", headers={"Authorization": authorization})

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "malformed_credentials"
    assert body["message"]


def test_login_upgrades_a_hash_made_with_old_parameters(
    live_server: LiveServer, app: Flask
) -> None:
    old_hasher = argon2.PasswordHasher(time_cost=2, memory_cost=128, parallelism=1)
    with app.app_context():
        db.insert_user("old@example.com", old_hasher.hash("old password"), is_admin=False)

    assert live_server.login("old@example.com", "old password").status_code == 200

    with app.app_context():
        user = db.find_user("old@example.com")
    assert user is not None
    assert "t=1" in user.password_hash
    assert "m=64" in user.password_hash
    assert live_server.login("old@example.com", "old password").status_code == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_login_only_accepts_post(live_server: LiveServer, method: str) -> None:
    response = live_server.http.request(method, live_server.url("/login"), timeout=10)

    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]
