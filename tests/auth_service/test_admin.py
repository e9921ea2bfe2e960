"""The admin users API over real HTTP: listing, flags, deletion, ending sessions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from flask import Flask

from auth_service import db
from tests.auth_service.conftest import Account, LiveServer, bearer


@pytest.fixture
def admin_token(live_server: LiveServer, admin: Account) -> dict[str, str]:
    return bearer(live_server.token(admin))


def feed_subjects(server: LiveServer) -> list[tuple[str, int]]:
    entries = server.get("/revocations").json()["revocations"]
    return [(entry["subject"], entry["min_version"]) for entry in entries]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_list_users_searches_and_pages(
    live_server: LiveServer,
    admin_token: dict[str, str],
    admin: Account,
    make_user: Callable[..., Account],
) -> None:
    for name in ("carol", "alice", "bob", "al_x"):
        make_user(f"{name}@example.com")

    everyone = live_server.get("/users", headers=admin_token).json()
    page = live_server.get("/users", params={"limit": 2, "offset": 1}, headers=admin_token).json()
    found = live_server.get("/users", params={"q": "AL"}, headers=admin_token).json()
    literal = live_server.get("/users", params={"q": "_"}, headers=admin_token).json()

    assert [u["email"] for u in everyone["users"]] == [
        "admin@example.com",
        "al_x@example.com",
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]
    assert (everyone["total"], everyone["limit"], everyone["offset"]) == (5, 50, 0)
    assert everyone["users"][0] == {
        "id": admin.id,
        "email": admin.email,
        "admin": True,
        "disabled": False,
        "created_at": everyone["users"][0]["created_at"],
    }
    assert everyone["users"][0]["created_at"].endswith("+00:00")
    assert [u["email"] for u in page["users"]] == ["al_x@example.com", "alice@example.com"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    assert [u["email"] for u in found["users"]] == ["al_x@example.com", "alice@example.com"]
    assert [u["email"] for u in literal["users"]] == ["al_x@example.com"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "501"}, "invalid_limit"),
        ({"limit": "-1"}, "invalid_limit"),
        ({"offset": "x"}, "invalid_offset"),
        ({"q": "x" * 255}, "invalid_q"),
    ],
)
def test_list_users_refuses_bad_parameters(
    live_server: LiveServer, admin_token: dict[str, str], params: dict, code: str
) -> None:
    response = live_server.get("/users", params=params, headers=admin_token)

    assert response.status_code == 400
    assert response.json()["error"] == code


def test_disabling_ends_sessions_and_logins_and_enabling_restores_logins(
    live_server: LiveServer, admin_token: dict[str, str], user: Account
) -> None:
    token = live_server.token(user)

    disabled = live_server.request(
        "PATCH", f"/users/{user.id}", json={"disabled": True}, headers=admin_token
    )

    assert disabled.status_code == 200
    assert disabled.json()["disabled"] is True
    assert live_server.get("/validate", headers=bearer(token)).status_code == 401
    assert live_server.login(user.email, user.password).status_code == 401
    enabled = live_server.request(
        "PATCH", f"/users/{user.id}", json={"disabled": False}, headers=admin_token
    )
    assert enabled.json()["disabled"] is False
    assert live_server.get("/validate", headers=bearer(token)).status_code == 401
    assert live_server.get("/validate", headers=bearer(live_server.token(user))).ok
    assert feed_subjects(live_server) == [(sha256(user.email), 1), (sha256(user.email), 2)]


def test_promotion_revokes_and_new_tokens_say_admin(
    live_server: LiveServer, admin_token: dict[str, str], user: Account
) -> None:
    token = live_server.token(user)

    response = live_server.request(
        "PATCH", f"/users/{user.id}", json={"admin": True}, headers=admin_token
    )

    assert response.json()["admin"] is True
    assert live_server.get("/validate", headers=bearer(token)).status_code == 401
    fresh = live_server.get("/validate", headers=bearer(live_server.token(user))).json()
    assert fresh["admin"] is True
    assert fresh["tv"] == 1


def test_a_patch_that_changes_nothing_revokes_nothing(
    live_server: LiveServer, admin_token: dict[str, str], user: Account
) -> None:
    token = live_server.token(user)

    response = live_server.request(
        "PATCH", f"/users/{user.id}", json={"admin": False, "disabled": False}, headers=admin_token
    )

    assert response.status_code == 200
    assert live_server.get("/validate", headers=bearer(token)).status_code == 200
    assert feed_subjects(live_server) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_request"),
        ({"admin": "yes"}, "invalid_admin"),
        ({"disabled": 1}, "invalid_disabled"),
        ({"email": "x@example.com"}, "invalid_request"),
    ],
)
def test_patch_refuses_bad_bodies(
    live_server: LiveServer, admin_token: dict[str, str], user: Account, body: dict, code: str
) -> None:
    response = live_server.request("PATCH", f"/users/{user.id}", json=body, headers=admin_token)

    assert response.status_code == 400
    assert response.json()["error"] == code


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/users/{id}", {"admin": False}),
        ("PATCH", "/users/{id}", {"disabled": True}),
        ("DELETE", "/users/{id}", None),
    ],
)
def test_an_admin_cannot_demote_disable_or_delete_themselves(
    live_server: LiveServer,
    admin_token: dict[str, str],
    admin: Account,
    method: str,
    path: str,
    body: dict | None,
) -> None:
    response = live_server.request(method, path.format(id=admin.id), json=body, headers=admin_token)

    assert response.status_code == 400
    assert response.json()["error"] == "cannot_change_self"
    assert live_server.get("/validate", headers=admin_token).json()["admin"] is True


def test_delete_user_removes_it_and_ends_its_tokens(
    live_server: LiveServer, app: Flask, admin_token: dict[str, str], user: Account
) -> None:
    token = live_server.token(user)

    response = live_server.request("DELETE", f"/users/{user.id}", headers=admin_token)

    assert response.status_code == 204
    with app.app_context():
        assert db.find_user_by_id(user.id) is None
    assert live_server.get("/validate", headers=bearer(token)).status_code == 401
    assert feed_subjects(live_server) == [(sha256(user.email), 2147483647)]


def test_revoke_ends_every_session_of_the_user(
    live_server: LiveServer, admin_token: dict[str, str], user: Account
) -> None:
    tokens = [live_server.token(user), live_server.token(user)]

    response = live_server.post(f"/users/{user.id}/revoke", headers=admin_token)

    assert response.status_code == 204
    for token in tokens:
        assert live_server.get("/validate", headers=bearer(token)).status_code == 401
    assert live_server.get("/validate", headers=bearer(live_server.token(user))).ok
    assert feed_subjects(live_server) == [(sha256(user.email), 1)]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/users/999999", {"disabled": True}),
        ("DELETE", "/users/999999", None),
        ("POST", "/users/999999/revoke", None),
    ],
)
def test_unknown_users_are_404(
    live_server: LiveServer, admin_token: dict[str, str], method: str, path: str, body: dict | None
) -> None:
    response = live_server.request(method, path, json=body, headers=admin_token)

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


ADMIN_ROUTES = [
    ("GET", "/users", None),
    ("PATCH", "/users/{id}", {"disabled": True}),
    ("DELETE", "/users/{id}", None),
    ("POST", "/users/{id}/revoke", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_refuse_non_admins(
    live_server: LiveServer,
    user: Account,
    admin: Account,
    method: str,
    path: str,
    body: dict | None,
) -> None:
    token = live_server.token(user)

    response = live_server.request(
        method, path.format(id=admin.id), json=body, headers=bearer(token)
    )

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert live_server.login(admin.email, admin.password).status_code == 200
    assert feed_subjects(live_server) == []


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_refuse_the_anonymous(
    live_server: LiveServer, admin: Account, method: str, path: str, body: dict | None
) -> None:
    response = live_server.request(method, path.format(id=admin.id), json=body)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_a_demoted_admins_old_token_no_longer_works(
    live_server: LiveServer,
    admin_token: dict[str, str],
    make_user: Callable[..., Account],
) -> None:
    other = make_user("second-admin@example.com", admin=True)
    other_token = bearer(live_server.token(other))

    live_server.request("PATCH", f"/users/{other.id}", json={"admin": False}, headers=admin_token)

    response = live_server.get("/users", headers=other_token)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert live_server.get("/users", headers=bearer(live_server.token(other))).status_code == 403
