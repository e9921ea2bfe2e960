"""POST /users over real HTTP: who may create whom, validation, duplicates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from tests.auth_service.conftest import Account, LiveServer, bearer

NEW_USER = {"email": "new@example.com", "password": "new password"}


@pytest.fixture
def open_server(make_app: Callable[..., Flask], serve: Callable[[Flask], LiveServer]) -> LiveServer:
    """Serve an app with open registration."""
    return serve(make_app(allow_registration=True))


def token_for(server: LiveServer, account: Account) -> str:
    response = server.login(account.email, account.password)
    assert response.status_code == 200
    return response.json()["token"]


@pytest.mark.parametrize(
    ("registration", "caller", "wants_admin", "status", "code"),
    [
        (False, None, False, 401, "authentication_required"),
        (False, None, True, 401, "authentication_required"),
        (False, "user", False, 403, "forbidden"),
        (False, "user", True, 403, "forbidden"),
        (False, "admin", False, 201, None),
        (False, "admin", True, 201, None),
        (True, None, False, 201, None),
        (True, None, True, 401, "authentication_required"),
        (True, "user", False, 201, None),
        (True, "user", True, 403, "forbidden"),
        (True, "admin", True, 201, None),
    ],
)
def test_who_may_create_users(
    make_app: Callable[..., Flask],
    serve: Callable[[Flask], LiveServer],
    user: Account,
    admin: Account,
    registration: bool,
    caller: str | None,
    wants_admin: bool,
    status: int,
    code: str | None,
) -> None:
    server = serve(make_app(allow_registration=registration))
    callers = {"user": user, "admin": admin}
    headers = bearer(token_for(server, callers[caller])) if caller else {}

    response = server.post("/users", json={**NEW_USER, "admin": wants_admin}, headers=headers)

    assert response.status_code == status
    if code is None:
        body = response.json()
        assert body["email"] == NEW_USER["email"]
        assert body["admin"] is wants_admin
        assert body["created_at"].endswith("+00:00")
        assert server.login(NEW_USER["email"], NEW_USER["password"]).status_code == 200
    else:
        assert response.json()["error"] == code
        assert server.login(NEW_USER["email"], NEW_USER["password"]).status_code == 401


def test_created_admin_gets_admin_tokens(live_server: LiveServer, admin: Account) -> None:
    headers = bearer(token_for(live_server, admin))
    live_server.post("/users", json={**NEW_USER, "admin": True}, headers=headers)

    token = live_server.login(NEW_USER["email"], NEW_USER["password"]).json()["token"]

    assert live_server.get("/validate", headers=bearer(token)).json()["admin"] is True


def test_an_invalid_token_is_refused_even_with_open_registration(open_server: LiveServer) -> None:
    response = open_server.post("/users", json=NEW_USER, headers=bearer("not.a.token"))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"password": "long enough"}, "invalid_email"),
        ({"email": None, "password": "long enough"}, "invalid_email"),
        ({"email": 5, "password": "long enough"}, "invalid_email"),
        ({"email": "not-an-address", "password": "long enough"}, "invalid_email"),
        ({"email": "' OR 1=1 --", "password": "long enough"}, "invalid_email"),
        ({"email": "a" * 250 + "@example.com", "password": "long enough"}, "invalid_email"),
        ({"email": "a@example.com"}, "invalid_password"),
        ({"email": "a@example.com", "password": "short"}, "invalid_password"),
        ({"email": "a@example.com", "password": "p" * 1025}, "invalid_password"),
        ({"email": "a@example.com", "password": 12345678}, "invalid_password"),
        ({"email": "a@example.com", "password": "long enough", "admin": "yes"}, "invalid_admin"),
        ({"email": "a@example.com", "password": "long enough", "role": "x"}, "invalid_request"),
        ([], "invalid_json"),
        ("a string", "invalid_json"),
    ],
)
def test_new_user_fields_are_validated(open_server: LiveServer, body: Any, code: str) -> None:
    response = open_server.post("/users", json=body)

    assert response.status_code == 400
    assert response.json()["error"] == code
    field = code.removeprefix("invalid_")
    if field in ("email", "password", "admin"):
        assert field in response.json()["message"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [(b"{not json", "application/json"), (b"email=a@example.com", "text/plain"), (b"", None)],
    ids=["broken-json", "form", "empty"],
)
def test_body_must_be_json(open_server: LiveServer, data: bytes, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}

    response = open_server.post("/users", data=data, headers=headers)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"


@pytest.mark.parametrize("email", ["user@example.com", "USER@example.com", " user@Example.com"])
def test_duplicate_email_is_a_conflict(open_server: LiveServer, user: Account, email: str) -> None:
    response = open_server.post("/users", json={"email": email, "password": "another password"})

    assert response.status_code == 409
    assert response.json()["error"] == "user_exists"
    # The existing user keeps their password.
    assert open_server.login(user.email, user.password).status_code == 200


def test_open_registration_is_rate_limited_per_client(
    make_app: Callable[..., Flask], serve: Callable[[Flask], LiveServer]
) -> None:
    server = serve(make_app(allow_registration=True, login_rate_limit_client="2/minute"))

    for number in range(2):
        body = {"email": f"u{number}@example.com", "password": "long enough"}
        assert server.post("/users", json=body).status_code == 201

    response = server.post("/users", json={"email": "u9@example.com", "password": "long enough"})
    assert response.status_code == 429
    assert response.headers["Retry-After"].isdigit()
