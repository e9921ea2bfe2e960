"""Who is calling: revoked login tokens, API keys and their scopes, through the gateway app.

The revocation list and the key cache are tested with auth's answers given as plain
functions (their transport, the real auth service, is tested end to end in
tests/e2e/test_accounts.py); the app around them runs on the real MongoDB.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
import uuid
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from common.errors import TransientError
from common.tokens import Claims, TokenVerifier
from gateway import create_app, identity
from gateway.config import Config
from gateway.identity import Identity, Verdicts
from gateway.revocations import (
    ASK_AUTH,
    DELETED_VERSION,
    OVERLAP_ENTRIES,
    PAGE_SIZE,
    REVOKED,
    VALID,
    RevocationList,
    subject_key,
)
from gateway.services import EXTENSION
from tests.support import forge

KEY = forge.new_rsa_key()
ANN = "ann@example.com"
API_KEY = f"v2m_{'a' * 12}_{'s' * 43}"
OTHER_KEY = f"v2m_{'b' * 12}_{'t' * 43}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Auth:
    """Auth's answers, as the gateway's poller and key cache would get them."""

    def __init__(self) -> None:
        self.entries: list[dict] = []
        self.keys: dict[str, dict] = {}
        self.down = False
        self.asked: list[object] = []

    def revoke_user(self, email: str, min_version: int) -> None:
        self._add({"kind": "user", "subject": subject_key(email), "min_version": min_version})

    def revoke_token(self, jti: str) -> None:
        self._add({"kind": "token", "subject": jti, "min_version": None})

    def _add(self, entry: dict) -> None:
        self.entries.append({"id": len(self.entries) + 1, **entry})

    def revocations(self, after: int) -> dict:
        self.asked.append(after)
        if self.down:
            raise TransientError("auth service unreachable")
        page = [entry for entry in self.entries if entry["id"] > after][:PAGE_SIZE]
        return {"revocations": page, "next": page[-1]["id"] if page else after}

    def validate(self, key: str) -> dict | None:
        self.asked.append(key)
        if self.down:
            raise TransientError("auth service unreachable")
        return self.keys.get(key)


def token_claims(**changes) -> Claims:
    payload = forge.claims(sub=ANN, **changes)
    return Claims(ANN, False, payload["iat"], payload["exp"], payload)


@pytest.fixture
def auth() -> Auth:
    return Auth()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def revocations(auth, clock) -> RevocationList:
    return RevocationList(auth.revocations, poll_seconds=10.0, clock=clock)


def test_a_logged_out_token_is_revoked_and_no_other(auth, revocations):
    auth.revoke_token("jti-1")
    revocations.poll()
    assert revocations.status(token_claims(jti="jti-1")) == REVOKED
    assert revocations.status(token_claims(jti="jti-2")) == VALID
    assert revocations.status(token_claims()) == VALID


def test_a_users_tokens_below_the_new_version_are_revoked(auth, revocations):
    auth.revoke_user(ANN, 3)
    revocations.poll()
    assert revocations.status(token_claims(tv=2)) == REVOKED
    assert revocations.status(token_claims()) == REVOKED  # a token without tv counts as version 0
    assert revocations.status(token_claims(tv=3)) == VALID
    other = forge.claims(sub="bob@example.com", tv=0)
    assert revocations.status(Claims("bob@example.com", False, 0, 0, other)) == VALID


def test_each_poll_asks_again_from_a_little_before_the_last_and_keeps_the_highest_version(
    auth, revocations
):
    for version in range(1, OVERLAP_ENTRIES + 3):
        auth.revoke_user(ANN, version)
    revocations.poll()
    auth.revoke_user(ANN, OVERLAP_ENTRIES + 3)
    revocations.poll()
    # Entries committed out of the order of their ids are read on the next poll.
    assert auth.asked == [0, 2]
    assert revocations.status(token_claims(tv=OVERLAP_ENTRIES + 2)) == REVOKED
    assert revocations.status(token_claims(tv=OVERLAP_ENTRIES + 3)) == VALID


def test_a_full_page_is_followed_by_the_next_at_once(auth, revocations):
    for number in range(PAGE_SIZE + 5):
        auth.revoke_token(f"jti-{number}")
    revocations.poll()
    assert auth.asked == [0, PAGE_SIZE]
    assert revocations.status(token_claims(jti=f"jti-{PAGE_SIZE + 4}")) == REVOKED


def test_a_reload_drops_what_auth_let_expire(auth, revocations, clock):
    auth.revoke_token("jti-1")
    revocations.poll()
    auth.entries.clear()  # expired at auth: no longer listed
    clock.now += 599
    revocations.poll()
    assert revocations.status(token_claims(jti="jti-1")) == REVOKED
    clock.now += 1  # RELOAD_SECONDS after the last full read
    revocations.poll()
    assert auth.asked[-1] == 0
    assert revocations.status(token_claims(jti="jti-1")) == VALID


def stale_seconds() -> float:
    return REGISTRY.get_sample_value("video2mp3_gateway_revocations_stale_seconds")


def test_an_unreachable_auth_keeps_the_list_and_reports_how_stale_it_is(
    auth, revocations, clock, caplog
):
    auth.revoke_user(ANN, 1)
    revocations._fresh_at = clock.now  # as the polling thread starts: what each round does follows
    revocations._poll_and_report()
    assert stale_seconds() == 0
    auth.down = True
    clock.now += 25

    revocations._poll_and_report()

    assert revocations.status(token_claims(tv=0)) == REVOKED
    assert stale_seconds() == 25
    assert "cannot read revocations" in caplog.text
    auth.down = False
    revocations._poll_and_report()
    assert stale_seconds() == 0


def test_malformed_entries_are_skipped(auth, revocations):
    auth._add({"kind": "user", "subject": subject_key(ANN), "min_version": "9"})
    auth._add({"kind": "session", "subject": "x"})
    auth.revoke_token("jti-1")
    revocations.poll()
    assert revocations.status(token_claims()) == VALID
    assert revocations.status(token_claims(jti="jti-1")) == REVOKED


@pytest.fixture
def verdicts(auth, clock) -> Verdicts:
    return Verdicts(auth.validate, ttl=15.0, clock=clock)


def test_a_keys_verdict_is_kept_for_the_ttl_by_its_hash_then_asked_again(auth, verdicts, clock):
    auth.keys[API_KEY] = {"sub": ANN, "admin": True, "scopes": ["jobs:read"], "key_id": "a" * 12}
    assert verdicts.answer(API_KEY)["scopes"] == ["jobs:read"]
    assert list(verdicts._verdicts) == [hashlib.sha256(API_KEY.encode()).hexdigest()]

    del auth.keys[API_KEY]  # revoked
    clock.now += 14.9
    assert verdicts.answer(API_KEY) is not None
    clock.now += 0.1
    assert verdicts.answer(API_KEY) is None
    assert auth.asked == [API_KEY, API_KEY]


def test_a_refused_key_is_remembered_too(auth, verdicts, clock):
    assert verdicts.answer(OTHER_KEY) is None
    assert verdicts.answer(OTHER_KEY) is None
    assert auth.asked == [OTHER_KEY]


# The app, with auth's answers swapped in and a token signer of the test's own.


@pytest.fixture
def client(mongo_config, rabbitmq_config, auth) -> Iterator[FlaskClient]:
    app = create_app(Config(mongo=mongo_config, rabbit=rabbitmq_config))
    services = app.extensions[EXTENSION]
    verifier = TokenVerifier.from_public_key(
        KEY.public_key(), issuer=forge.ISSUER, audience=forge.AUDIENCE
    )
    app.extensions[EXTENSION] = dataclasses.replace(services, verifier=verifier)
    revocations = RevocationList(auth.revocations, poll_seconds=10.0)
    app.extensions[identity.EXTENSION] = Identity(
        revocations=revocations, verdicts=Verdicts(auth.validate, ttl=15.0)
    )
    yield app.test_client()
    services.close()


def session(**claims) -> dict[str, str]:
    return {"Authorization": f"Bearer {forge.sign(KEY, forge.claims(sub=ANN, **claims))}"}


def key_holder(auth: Auth, *scopes: str, admin: bool = False) -> dict[str, str]:
    key = f"v2m_{uuid.uuid4().hex[:12]}_{'k' * 43}"
    auth.keys[key] = {"sub": ANN, "admin": admin, "scopes": list(scopes), "key_id": key[4:16]}
    return {"Authorization": f"Bearer {key}"}


def assert_insufficient(response, required: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json["error"] == "insufficient_scope"
    assert response.json["required"] == required
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_a_read_key_lists_jobs_but_may_not_upload(client, auth):
    headers = key_holder(auth, "jobs:read")
    assert client.get("/jobs", headers=headers).status_code == 200
    upload = client.post("/upload", headers=headers, data={"file": (io.BytesIO(b"x"), "a.mp4")})
    assert_insufficient(upload, "jobs:write")
    assert_insufficient(
        client.post("/jobs", headers=headers, json={"url": "https://x"}), "jobs:write"
    )
    assert_insufficient(client.delete("/jobs/x", headers=headers), "jobs:write")


def test_a_write_key_may_not_read(client, auth):
    headers = key_holder(auth, "jobs:write")
    assert_insufficient(client.get("/jobs", headers=headers), "jobs:read")
    assert_insufficient(client.get("/me", headers=headers), "jobs:read")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api-keys"),
        ("get", "/api-keys"),
        ("delete", f"/api-keys/{'a' * 12}"),
        ("post", "/logout"),
        ("post", "/me/password"),
        ("delete", "/me"),
        ("get", "/admin/dead-letters"),
    ],
)
def test_a_key_may_do_nothing_that_needs_a_session(client, auth, method, path):
    headers = key_holder(auth, "jobs:read", "jobs:write", admin=True)
    assert_insufficient(getattr(client, method)(path, headers=headers, json={}), "session")


def test_me_says_how_the_caller_logged_in(client, auth):
    by_key = client.get("/me", headers=key_holder(auth, "jobs:read", "jobs:write", admin=True)).json
    assert by_key["auth"] == "api_key"
    assert by_key["scopes"] == ["jobs:read", "jobs:write"]
    assert by_key["key_id"] is not None
    assert by_key["email"] == ANN
    assert by_key["admin"] is False  # a key never carries admin rights, even an admin's
    by_session = client.get("/me", headers=session(admin=True)).json
    assert (by_session["auth"], by_session["scopes"], by_session["key_id"]) == (
        "session",
        None,
        None,
    )
    assert by_session["admin"] is True


def test_an_unknown_or_malformed_key_is_401_and_a_malformed_one_costs_no_call(client, auth):
    unknown = client.get("/jobs", headers={"Authorization": f"Bearer {API_KEY}"})
    assert unknown.status_code == 401
    assert unknown.json["error"] == "invalid_token"
    malformed = client.get("/jobs", headers={"Authorization": "Bearer v2m_short"})
    assert malformed.status_code == 401
    assert "v2m_short" not in auth.asked


def test_a_key_auth_cannot_check_is_503_not_401(client, auth):
    auth.down = True
    response = client.get("/jobs", headers=key_holder(auth, "jobs:read"))
    assert response.status_code == 503


def test_a_revoked_session_is_401_token_revoked(client, auth):
    auth.revoke_token("jti-out")
    auth.revoke_user(ANN, 2)
    client.application.extensions[identity.EXTENSION].revocations.poll()

    for headers in (session(jti="jti-out", tv=5), session(tv=1)):
        response = client.get("/jobs", headers=headers)
        assert response.status_code == 401
        assert response.json["error"] == "token_revoked"
        assert response.json["message"] == "This session has ended: log in again."
    assert client.get("/jobs", headers=session(tv=2)).status_code == 200


def test_a_deleted_users_address_is_for_auth_to_judge(auth, revocations):
    auth.revoke_user(ANN, DELETED_VERSION)
    revocations.poll()
    assert revocations.status(token_claims(tv=5)) == ASK_AUTH


def test_a_token_of_a_registered_again_address_is_what_auth_says(client, auth):
    auth.revoke_user(ANN, DELETED_VERSION)
    client.application.extensions[identity.EXTENSION].revocations.poll()
    new_account = session(iat=int(time.time()) + 1)
    auth.keys[new_account["Authorization"].split()[1]] = {"sub": ANN}

    assert client.get("/jobs", headers=new_account).status_code == 200
    refused = client.get("/jobs", headers=session(jti="old-account"))
    assert refused.status_code == 401
    assert refused.json["error"] == "token_revoked"
