"""Sessions end when they should: logout, password changes, disabled and deleted users.

Over real HTTP against the test's own database: auth's own /validate checks MySQL,
and GET /revocations tells the gateway what to refuse.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from flask import Flask

from auth_service import accounts, db
from tests.auth_service.conftest import DEFAULT_PASSWORD, Account, LiveServer, bearer
from tests.support import forge

NEW_PASSWORD = "a brand new password"


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def assert_revoked(server: LiveServer, token: str) -> None:
    response = server.get("/validate", headers=bearer(token))
    assert response.status_code == 401
    assert response.json() == {
        "error": "invalid_token",
        "message": "This session has ended: log in again.",
    }


def feed(server: LiveServer, after: int = 0) -> dict:
    response = server.get("/revocations", params={"after": after})
    assert response.status_code == 200
    return response.json()


def test_tokens_carry_the_users_token_version(
    live_server: LiveServer, app: Flask, user: Account
) -> None:
    first = claims_of(live_server.token(user))
    with app.app_context():
        accounts.revoke_sessions(user.id)
        accounts.revoke_sessions(user.id)

    assert first["tv"] == 0
    assert claims_of(live_server.token(user))["tv"] == 2


def test_a_disabled_user_cannot_log_in_and_is_told_nothing_more(
    live_server: LiveServer, app: Flask, user: Account
) -> None:
    with app.app_context():
        accounts.change_flags(user.id, admin=None, disabled=True)

    right = live_server.login(user.email, user.password)
    wrong = live_server.login(user.email, "not the password")

    assert right.status_code == wrong.status_code == 401
    assert right.json() == wrong.json()
    assert right.json()["error"] == "invalid_credentials"


def test_a_disabled_users_token_fails_validate(
    live_server: LiveServer, app: Flask, user: Account
) -> None:
    token = live_server.token(user)
    with app.app_context():
        accounts.change_flags(user.id, admin=None, disabled=True)

    assert_revoked(live_server, token)


def test_logout_revokes_that_token_only(live_server: LiveServer, user: Account) -> None:
    token = live_server.token(user)
    other = live_server.token(user)

    response = live_server.post("/logout", headers=bearer(token))

    assert response.status_code == 204
    assert_revoked(live_server, token)
    assert live_server.get("/validate", headers=bearer(other)).status_code == 200
    assert live_server.post("/logout", headers=bearer(token)).status_code == 401
    entries = feed(live_server)["revocations"]
    assert entries[-1]["kind"] == "token"
    assert entries[-1]["subject"] == claims_of(token)["jti"]
    assert entries[-1]["min_version"] is None


def test_logout_needs_a_token(live_server: LiveServer) -> None:
    response = live_server.post("/logout")

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_a_password_change_ends_older_tokens_and_answers_a_new_one(
    live_server: LiveServer, user: Account
) -> None:
    before = live_server.token(user)

    response = live_server.post(
        "/password",
        json={"current_password": user.password, "new_password": NEW_PASSWORD},
        headers=bearer(before),
    )

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert claims_of(body["token"])["tv"] == 1
    assert_revoked(live_server, before)
    assert live_server.get("/validate", headers=bearer(body["token"])).status_code == 200
    after_login = live_server.login(user.email, NEW_PASSWORD)
    assert after_login.status_code == 200
    assert live_server.get("/validate", headers=bearer(after_login.json()["token"])).ok
    assert live_server.login(user.email, user.password).status_code == 401
    (entry,) = feed(live_server)["revocations"]
    assert (entry["kind"], entry["subject"]) == ("user", sha256(user.email))
    assert entry["min_version"] == 1


RIGHT = DEFAULT_PASSWORD


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"current_password": "wrong", "new_password": NEW_PASSWORD}, 401, "invalid_credentials"),
        ({"new_password": NEW_PASSWORD}, 401, "invalid_credentials"),
        ({"current_password": RIGHT, "new_password": "short"}, 400, "invalid_password"),
        ({"current_password": RIGHT, "new_password": 12345678}, 400, "invalid_password"),
        ({"current_password": RIGHT}, 400, "invalid_password"),
        ({"current_password": RIGHT, "new_password": NEW_PASSWORD, "x": 1}, 400, "invalid_request"),
        (["not", "an", "object"], 400, "invalid_json"),
    ],
)
def test_password_change_refusals_change_nothing(
    live_server: LiveServer, user: Account, body: object, status: int, code: str
) -> None:
    token = live_server.token(user)

    response = live_server.post("/password", json=body, headers=bearer(token))

    assert response.status_code == status
    assert response.json()["error"] == code
    assert live_server.get("/validate", headers=bearer(token)).status_code == 200
    assert live_server.login(user.email, user.password).status_code == 200
    assert feed(live_server)["revocations"] == []


def test_wrong_current_passwords_are_rate_limited(
    make_app: Callable[..., Flask], serve: Callable[[Flask], LiveServer], user: Account
) -> None:
    server = serve(make_app(login_rate_limit_account="2/minute"))
    token = server.token(user)
    wrong = {"current_password": "wrong password", "new_password": NEW_PASSWORD}

    statuses = [server.post("/password", json=wrong, headers=bearer(token)).status_code]
    statuses += [server.post("/password", json=wrong, headers=bearer(token)).status_code]
    statuses += [server.post("/password", json=wrong, headers=bearer(token)).status_code]

    assert statuses == [401, 401, 429]


def test_delete_me_deletes_the_user_and_ends_its_tokens(
    live_server: LiveServer, app: Flask, user: Account
) -> None:
    token = live_server.token(user)

    response = live_server.request("DELETE", "/me", headers=bearer(token))

    assert response.status_code == 204
    with app.app_context():
        assert db.find_user(user.email) is None
    assert_revoked(live_server, token)
    assert live_server.login(user.email, user.password).status_code == 401
    (entry,) = feed(live_server)["revocations"]
    assert entry["subject"] == sha256(user.email)
    assert entry["min_version"] == 2147483647


def test_a_deleted_and_recreated_users_old_token_fails(
    live_server: LiveServer,
    app: Flask,
    make_user: Callable[..., Account],
    signing_key: RSAPrivateKey,
    user: Account,
) -> None:
    # The account is a minute old and the token was issued 5 s ago: no sleep needed.
    with app.app_context(), db.get_db().cursor() as cursor:
        cursor.execute("UPDATE users SET created_at = created_at - INTERVAL 1 MINUTE")
    token = forge.sign(signing_key, forge.claims(sub=user.email, iat=int(time.time()) - 5, tv=0))
    assert live_server.get("/validate", headers=bearer(token)).status_code == 200
    live_server.request("DELETE", "/me", headers=bearer(live_server.token(user)))

    again = make_user(user.email, user.password)

    assert_revoked(live_server, token)
    assert live_server.get("/validate", headers=bearer(live_server.token(again))).ok


def test_a_token_without_tv_counts_as_version_zero(
    live_server: LiveServer, app: Flask, signing_key: RSAPrivateKey, user: Account
) -> None:
    legacy = forge.sign(signing_key, forge.claims(sub=user.email))
    assert "tv" not in claims_of(legacy)
    assert live_server.get("/validate", headers=bearer(legacy)).status_code == 200

    with app.app_context():
        accounts.revoke_sessions(user.id)

    assert_revoked(live_server, legacy)


def test_a_token_with_a_non_integer_tv_is_refused(
    live_server: LiveServer, signing_key: RSAPrivateKey, user: Account
) -> None:
    token = forge.sign(signing_key, forge.claims(sub=user.email, tv="7"))

    response = live_server.get("/validate", headers=bearer(token))

    assert response.status_code == 401
    assert "tv" in response.json()["message"]


def test_the_feed_lists_entries_oldest_first_and_pages(
    live_server: LiveServer, app: Flask, user: Account, admin: Account
) -> None:
    with app.app_context():
        accounts.revoke_sessions(user.id)
        accounts.change_flags(admin.id, admin=False, disabled=None)
        accounts.delete_user(user.id)

    whole = feed(live_server)
    entries = whole["revocations"]
    assert [(e["subject"], e["min_version"]) for e in entries] == [
        (sha256(user.email), 1),
        (sha256(admin.email), 1),
        (sha256(user.email), 2147483647),
    ]
    assert [e["kind"] for e in entries] == ["user"] * 3
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids)
    assert whole["next"] == ids[-1]
    assert feed(live_server, ids[0])["revocations"] == entries[1:]
    assert feed(live_server, ids[-1]) == {"revocations": [], "next": ids[-1]}


def test_the_feed_pages_by_a_thousand(live_server: LiveServer, app: Flask) -> None:
    with app.app_context(), db.get_db().cursor() as cursor:
        cursor.executemany(
            "INSERT INTO revocations (kind, subject, min_version, expires_at) "
            "VALUES ('token', %s, NULL, UTC_TIMESTAMP() + INTERVAL 1 HOUR)",
            [(f"{n:032x}",) for n in range(1001)],
        )

    first = feed(live_server)
    second = feed(live_server, first["next"])

    assert len(first["revocations"]) == 1000
    assert [e["subject"] for e in second["revocations"]] == [f"{1000:032x}"]
    assert second["next"] == second["revocations"][0]["id"]


def test_the_feed_leaves_out_expired_entries_and_writes_clear_them(
    live_server: LiveServer, app: Flask, user: Account
) -> None:
    with app.app_context():
        with db.get_db().cursor() as cursor:
            cursor.execute(
                "INSERT INTO revocations (kind, subject, expires_at) "
                "VALUES ('token', 'old', UTC_TIMESTAMP() - INTERVAL 1 SECOND)"
            )
        assert feed(live_server)["revocations"] == []

        accounts.revoke_sessions(user.id)

        with db.get_db().cursor() as cursor:
            cursor.execute("SELECT subject FROM revocations")
            assert cursor.fetchall() == [(sha256(user.email),)]


@pytest.mark.parametrize("after", ["-1", "x", "1.5", "99999999999999999999"])
def test_the_feed_refuses_a_bad_cursor(live_server: LiveServer, after: str) -> None:
    response = live_server.get("/revocations", params={"after": after})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_after"


def test_revocation_entries_outlive_every_token_they_revoke(
    live_server: LiveServer, app: Flask, user: Account
) -> None:
    with app.app_context():
        accounts.revoke_sessions(user.id)
        with db.get_db().cursor() as cursor:
            cursor.execute("SELECT TIMESTAMPDIFF(SECOND, created_at, expires_at) FROM revocations")
            ((lifetime,),) = cursor.fetchall()

    assert lifetime == 3600 + 60


def test_session_routes_refuse_revoked_tokens(live_server: LiveServer, user: Account) -> None:
    token = live_server.token(user)
    live_server.post("/logout", headers=bearer(token))

    for method, path in [("POST", "/logout"), ("GET", "/api-keys"), ("DELETE", "/me")]:
        response = live_server.request(method, path, headers=bearer(token))
        assert response.status_code == 401, path
        assert response.json()["error"] == "invalid_token"
