"""API keys over real HTTP: made, listed and revoked with a session, validated by /validate."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from auth_service import accounts, api_keys, db
from tests.auth_service.conftest import Account, LiveServer, bearer

NEW_KEY = {"name": "backup script", "scopes": ["jobs:read"]}
KEY_TEXT = re.compile(r"v2m_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def create_key(server: LiveServer, token: str, **changes: Any) -> dict:
    response = server.post("/api-keys", json={**NEW_KEY, **changes}, headers=bearer(token))
    assert response.status_code == 201, response.text
    return response.json()


def run_sql(app: Flask, statement: str, params: tuple = ()) -> list[tuple]:
    with app.app_context(), db.get_db().cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.with_rows else []


def assert_invalid_key(server: LiveServer, key: str) -> None:
    response = server.get("/validate", headers=bearer(key))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="video2mp3"'


def test_create_shows_the_key_once_and_stores_only_its_hash(
    live_server: LiveServer, app: Flask, user: Account
) -> None:
    response = live_server.post(
        "/api-keys",
        json={"name": "  ci  ", "scopes": ["jobs:write", "jobs:read"], "expires_in_days": 30},
        headers=bearer(live_server.token(user)),
    )

    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"id", "name", "scopes", "created_at", "expires_at", "last_used_at", "key"}
    assert KEY_TEXT.fullmatch(body["key"])
    assert body["key"].startswith(f"v2m_{body['id']}_")
    assert body["name"] == "ci"
    assert body["scopes"] == ["jobs:read", "jobs:write"]
    assert body["last_used_at"] is None
    assert body["created_at"].endswith("+00:00")
    assert body["expires_at"] > body["created_at"]
    ((stored,),) = run_sql(app, "SELECT secret_hash FROM api_keys WHERE id = %s", (body["id"],))
    assert stored == hashlib.sha256(body["key"].encode()).hexdigest()


def test_a_key_validates_as_its_owner_without_admin_rights(
    live_server: LiveServer, app: Flask, admin: Account
) -> None:
    key = create_key(live_server, live_server.token(admin), expires_in_days=2)

    response = live_server.post("/validate", headers=bearer(key["key"]))

    assert response.status_code == 200
    body = response.json()
    assert body["sub"] == admin.email
    assert body["admin"] is False
    assert body["scopes"] == ["jobs:read"]
    assert body["key_id"] == key["id"]
    assert isinstance(body["exp"], int)


def test_last_use_is_recorded_at_most_once_a_minute(
    live_server: LiveServer, app: Flask, user: Account
) -> None:
    key = create_key(live_server, live_server.token(user))
    live_server.get("/validate", headers=bearer(key["key"]))
    ((first,),) = run_sql(app, "SELECT last_used_at FROM api_keys WHERE id = %s", (key["id"],))
    assert first is not None
    run_sql(
        app,
        "UPDATE api_keys SET last_used_at = last_used_at - INTERVAL 30 SECOND WHERE id = %s",
        (key["id"],),
    )

    live_server.get("/validate", headers=bearer(key["key"]))
    ((recent,),) = run_sql(app, "SELECT last_used_at FROM api_keys WHERE id = %s", (key["id"],))
    run_sql(
        app,
        "UPDATE api_keys SET last_used_at = last_used_at - INTERVAL 31 SECOND WHERE id = %s",
        (key["id"],),
    )
    live_server.get("/validate", headers=bearer(key["key"]))
    ((later,),) = run_sql(app, "SELECT last_used_at FROM api_keys WHERE id = %s", (key["id"],))

    assert (first - recent).total_seconds() == 30  # not rewritten within the minute
    assert (later - recent).total_seconds() >= 30  # rewritten once the minute passed


def test_list_shows_live_keys_newest_first_without_secrets(
    live_server: LiveServer, app: Flask, user: Account, admin: Account
) -> None:
    token = live_server.token(user)
    older = create_key(live_server, token, name="older")
    newer = create_key(live_server, token, name="newer")
    revoked = create_key(live_server, token, name="revoked")
    live_server.request("DELETE", f"/api-keys/{revoked['id']}", headers=bearer(token))
    expired = create_key(live_server, token, name="expired", expires_in_days=1)
    run_sql(
        app,
        "UPDATE api_keys SET expires_at = UTC_TIMESTAMP() - INTERVAL 1 SECOND WHERE id = %s",
        (expired["id"],),
    )
    run_sql(
        app,
        "UPDATE api_keys SET created_at = created_at - INTERVAL 1 MINUTE WHERE id = %s",
        (older["id"],),
    )
    create_key(live_server, live_server.token(admin), name="someone else's")

    response = live_server.get("/api-keys", headers=bearer(token))

    assert response.status_code == 200
    keys = response.json()["keys"]
    assert [k["name"] for k in keys] == ["newer", "older"]
    assert keys[0] == {
        "id": newer["id"],
        "name": "newer",
        "scopes": ["jobs:read"],
        "created_at": newer["created_at"],
        "expires_at": None,
        "last_used_at": None,
        "prefix": f"v2m_{newer['id']}",
    }


def test_a_revoked_key_stops_validating(live_server: LiveServer, user: Account) -> None:
    token = live_server.token(user)
    key = create_key(live_server, token)
    assert live_server.get("/validate", headers=bearer(key["key"])).status_code == 200

    response = live_server.request("DELETE", f"/api-keys/{key['id']}", headers=bearer(token))

    assert response.status_code == 204
    assert_invalid_key(live_server, key["key"])
    again = live_server.request("DELETE", f"/api-keys/{key['id']}", headers=bearer(token))
    assert again.status_code == 404


def test_an_expired_key_stops_validating(
    live_server: LiveServer, app: Flask, user: Account
) -> None:
    key = create_key(live_server, live_server.token(user), expires_in_days=1)
    run_sql(
        app,
        "UPDATE api_keys SET expires_at = UTC_TIMESTAMP() - INTERVAL 1 SECOND WHERE id = %s",
        (key["id"],),
    )

    assert_invalid_key(live_server, key["key"])


def test_a_disabled_or_deleted_owners_keys_stop_validating(
    live_server: LiveServer, app: Flask, user: Account, make_user: Callable[..., Account]
) -> None:
    key = create_key(live_server, live_server.token(user))
    other = make_user("other@example.com")
    other_key = create_key(live_server, live_server.token(other))

    with app.app_context():
        accounts.change_flags(user.id, admin=None, disabled=True)
        accounts.delete_user(other.id)

    assert_invalid_key(live_server, key["key"])
    assert_invalid_key(live_server, other_key["key"])
    assert run_sql(app, "SELECT id FROM api_keys WHERE user_id = %s", (other.id,)) == []


def test_keys_outlive_a_password_change(live_server: LiveServer, user: Account) -> None:
    token = live_server.token(user)
    key = create_key(live_server, token)

    live_server.post(
        "/password",
        json={"current_password": user.password, "new_password": "another long password"},
        headers=bearer(token),
    )

    assert live_server.get("/validate", headers=bearer(key["key"])).status_code == 200


def test_wrong_secret_and_unknown_and_malformed_keys_fail(
    live_server: LiveServer, user: Account
) -> None:
    key = create_key(live_server, live_server.token(user))["key"]
    wrong_secret = key[:-1] + ("A" if key[-1] != "A" else "B")
    unknown_id = "v2m_000000000000_" + key.rsplit("_", 1)[-1].rjust(43, "x")[-43:]

    for bad in (wrong_secret, unknown_id, "v2m_", "v2m_" + "a" * 60, key + "x"):
        assert_invalid_key(live_server, bad)


def test_another_users_key_cannot_be_revoked(
    live_server: LiveServer, user: Account, admin: Account
) -> None:
    key = create_key(live_server, live_server.token(admin))

    response = live_server.request(
        "DELETE", f"/api-keys/{key['id']}", headers=bearer(live_server.token(user))
    )

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert live_server.get("/validate", headers=bearer(key["key"])).status_code == 200


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"name": ""}, "invalid_name"),
        ({"name": "   "}, "invalid_name"),
        ({"name": "x" * 101}, "invalid_name"),
        ({"name": "line\nbreak"}, "invalid_name"),
        ({"name": 7}, "invalid_name"),
        ({"scopes": []}, "invalid_scopes"),
        ({"scopes": ["admin"]}, "invalid_scopes"),
        ({"scopes": "jobs:read"}, "invalid_scopes"),
        ({"expires_in_days": 0}, "invalid_expiry"),
        ({"expires_in_days": 3651}, "invalid_expiry"),
        ({"expires_in_days": 1.5}, "invalid_expiry"),
        ({"expires_in_days": True}, "invalid_expiry"),
        ({"owner": "x"}, "invalid_request"),
    ],
)
def test_create_refuses_bad_fields(
    live_server: LiveServer, app: Flask, user: Account, changes: dict, code: str
) -> None:
    response = live_server.post(
        "/api-keys", json={**NEW_KEY, **changes}, headers=bearer(live_server.token(user))
    )

    assert response.status_code == 400
    assert response.json()["error"] == code
    assert run_sql(app, "SELECT COUNT(*) FROM api_keys") == [(0,)]


def test_at_most_fifty_live_keys(live_server: LiveServer, app: Flask, user: Account) -> None:
    token = live_server.token(user)
    keys = [create_key(live_server, token, name=f"key {n}") for n in range(api_keys.MAX_LIVE_KEYS)]

    refused = live_server.post("/api-keys", json=NEW_KEY, headers=bearer(token))
    live_server.request("DELETE", f"/api-keys/{keys[0]['id']}", headers=bearer(token))
    allowed = live_server.post("/api-keys", json=NEW_KEY, headers=bearer(token))

    assert api_keys.MAX_LIVE_KEYS == 50
    assert refused.status_code == 400
    assert refused.json()["error"] == "too_many_keys"
    assert allowed.status_code == 201


SESSION_ROUTES = [
    ("POST", "/api-keys", NEW_KEY),
    ("GET", "/api-keys", None),
    ("DELETE", "/api-keys/000000000000", None),
    ("POST", "/logout", None),
    ("POST", "/password", {"current_password": "x", "new_password": "y" * 10}),
    ("DELETE", "/me", None),
    ("GET", "/users", None),
    ("PATCH", "/users/1", {"disabled": True}),
    ("DELETE", "/users/1", None),
    ("POST", "/users/1/revoke", None),
    ("POST", "/users", {"email": "new@example.com", "password": "long enough"}),
]


@pytest.mark.parametrize(("method", "path", "body"), SESSION_ROUTES)
def test_session_routes_refuse_api_keys(
    live_server: LiveServer,
    app: Flask,
    admin: Account,
    method: str,
    path: str,
    body: dict | None,
) -> None:
    key = create_key(live_server, live_server.token(admin), scopes=["jobs:read", "jobs:write"])

    response = live_server.request(method, path, json=body, headers=bearer(key["key"]))

    assert response.status_code == 403
    assert response.json() == {
        "error": "insufficient_scope",
        "message": "This needs a login session; an API key cannot do it.",
        "required": "session",
    }
    assert run_sql(app, "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL") == [(1,)]
    assert live_server.login(admin.email, admin.password).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), SESSION_ROUTES[:3])
def test_key_routes_need_a_token(
    live_server: LiveServer, method: str, path: str, body: dict | None
) -> None:
    response = live_server.request(method, path, json=body)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_a_bad_key_on_a_session_route_is_a_401(live_server: LiveServer) -> None:
    response = live_server.get("/api-keys", headers=bearer("v2m_000000000000_" + "x" * 43))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
