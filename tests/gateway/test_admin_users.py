"""The admin API's users and quotas, through the running system (auth owns the accounts).

Every change is checked for its effect (a login refused, a token ended, an upload
refused, data erased) and for its entry in the audit log. The stack runs the shipped
quotas and revocation poll (10 s); nothing is raised.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from openapi_core import OpenAPI

from tests.e2e.test_openapi import conforms
from tests.support.media import make_video
from tests.support.polling import wait_until
from tests.support.quotas import account, jobs_inserted
from tests.support.system import ADMIN, System, User, new_user

SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "gateway/openapi.yaml").read_text())
# A revocation reaches every gateway within a poll (10 s) plus a slow answer.
REVOKED_WITHIN_S = 30

# Each route and a body that would change something if the caller were allowed.
ROUTES = [
    ("GET", "/admin/users", None),
    ("POST", "/admin/users", {"email": "new@e2e.test", "password": "pw-long-enough-123"}),
    ("PATCH", "/admin/users/1", {"disabled": True}),
    ("DELETE", "/admin/users/1", {"confirm": ADMIN[0]}),
    ("POST", "/admin/users/1/revoke", None),
    ("PUT", "/admin/users/1/quotas", {"email": ADMIN[0], "stored_bytes": 1}),
    ("GET", "/admin/jobs", None),
    ("GET", "/admin/queues", None),
    ("GET", "/admin/storage", None),
    ("GET", "/admin/audit", None),
    ("GET", "/admin/dead-letters", None),
]


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(SPEC)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("admin") / "clip.mp4"
    make_video(path, seconds=1.0)
    return path.read_bytes()


@pytest.fixture
def as_admin(system: System, openapi):
    """Call the gateway as the stack's admin; every answer is checked against the document."""

    def send(method: str, path: str, **kwargs: Any) -> requests.Response:
        response = requests.request(
            method,
            f"{system.gateway}{path}",
            headers={"Authorization": f"Bearer {system.admin_token}"},
            timeout=60,
            **kwargs,
        )
        conforms(openapi, response)
        return response

    return send


def row_of(as_admin, email: str) -> dict[str, Any]:
    """Return the admin API's row for the user with this email."""
    listing = as_admin("GET", "/admin/users", params={"q": email})
    assert listing.status_code == 200, listing.text
    (row,) = [user for user in listing.json()["users"] if user["email"] == email]
    return row


def audit_of(as_admin, target: str) -> list[tuple[str, str, dict]]:
    """Return the audit entries about ``target``, newest first: (actor, action, details)."""
    entries = as_admin("GET", "/admin/audit", params={"limit": 100}).json()["entries"]
    return [(e["actor"], e["action"], e["details"]) for e in entries if e["target"] == target]


def upload(system: System, user: User, clip: bytes) -> requests.Response:
    return requests.post(
        f"{system.gateway}/upload",
        headers=user.headers,
        files={"file": ("clip.mp4", clip)},
        timeout=60,
    )


def login_status(system: System, user: User) -> int:
    return requests.post(
        f"{system.gateway}/login", auth=(user.email, user.password), timeout=30
    ).status_code


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_only_an_admins_session_may_use_the_admin_api(system, user, method, path, body):
    url = f"{system.gateway}{path}"
    anonymous = requests.request(method, url, json=body, timeout=30)
    assert anonymous.status_code == 401
    refused = requests.request(method, url, json=body, headers=user.headers, timeout=30)
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"

    admin = {"Authorization": f"Bearer {system.admin_token}"}
    created = requests.post(
        f"{system.gateway}/api-keys",
        json={"name": "admin's script", "scopes": ["jobs:read", "jobs:write"]},
        headers=admin,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['key']}"}
    with_key = requests.request(method, url, json=body, headers=key, timeout=30)
    assert with_key.status_code == 403
    assert with_key.json()["error"] == "insufficient_scope"
    assert with_key.json()["required"] == "session"
    requests.delete(f"{system.gateway}/api-keys/{created.json()['id']}", headers=admin, timeout=30)
    assert login_status(system, new_user(system)) == 200  # nothing was disabled or deleted


def converted(system: System, user: User, clip: bytes) -> None:
    """Upload the clip as ``user`` and wait for its conversion to finish."""
    accepted = upload(system, user, clip)
    assert accepted.status_code == 202, accepted.text
    url = f"{system.gateway}{accepted.json()['status_url']}"
    wait_until(
        lambda: requests.get(url, headers=user.headers, timeout=30).json()["status"] == "done",
        timeout=60,
    )


def test_the_users_list_carries_each_users_usage_and_quota_overrides(system, as_admin, clip):
    user = new_user(system)
    converted(system, user, clip)
    with jobs_inserted(system, user.email, 2, status="queued", age=timedelta(minutes=5)):
        row = row_of(as_admin, user.email)
    me = account(system, user)

    assert (row["admin"], row["disabled"]) == (False, False)
    assert row["usage"] == {
        "stored_bytes": me["usage"]["stored_bytes"],  # the video and its MP3
        "active_jobs": 2,
        "jobs": 3,
    }
    assert row["usage"]["stored_bytes"] > len(clip)
    assert row["quota_overrides"] == {
        "stored_bytes": None,
        "active_jobs": None,
        "uploads_per_minute": None,
    }
    listing = as_admin("GET", "/admin/users", params={"limit": 1}).json()
    assert len(listing["users"]) == 1
    assert listing["total"] >= 2
    assert listing["default_quotas"] == me["quotas"]


def test_an_admin_creates_a_user_who_can_log_in(system, as_admin):
    email = f"made-{time.time_ns()}@e2e.test"
    body = {"email": email, "password": "a-long-password-123", "admin": False}

    created = as_admin("POST", "/admin/users", json=body)
    again = as_admin("POST", "/admin/users", json=body)

    assert created.status_code == 201, created.text
    assert created.json()["email"] == email
    assert again.status_code == 409
    assert login_status(system, User(email, body["password"], "")) == 200
    assert audit_of(as_admin, email) == [
        (ADMIN[0], "user.create", {"id": created.json()["id"], "admin": False})
    ]


def test_a_disabled_user_is_locked_out_and_enabled_again(system, as_admin):
    user = new_user(system)
    user_id = row_of(as_admin, user.email)["id"]
    jobs_url = f"{system.gateway}/jobs"
    assert requests.get(jobs_url, headers=user.headers, timeout=30).status_code == 200

    disabled = as_admin("PATCH", f"/admin/users/{user_id}", json={"disabled": True})

    assert disabled.status_code == 200, disabled.text
    assert row_of(as_admin, user.email)["disabled"] is True
    assert login_status(system, user) in (401, 403)
    wait_until(
        lambda: requests.get(jobs_url, headers=user.headers, timeout=30).status_code == 401,
        timeout=REVOKED_WITHIN_S,
    )
    enabled = as_admin("PATCH", f"/admin/users/{user_id}", json={"disabled": False})
    assert enabled.status_code == 200
    assert login_status(system, user) == 200
    assert [(a, action) for a, action, _ in audit_of(as_admin, user.email)] == [
        (ADMIN[0], "user.enable"),
        (ADMIN[0], "user.disable"),
    ]


def test_an_admin_makes_and_unmakes_an_admin_and_ends_sessions(system, as_admin):
    user = new_user(system)
    user_id = row_of(as_admin, user.email)["id"]

    promoted = as_admin("PATCH", f"/admin/users/{user_id}", json={"admin": True})
    assert promoted.status_code == 200
    assert row_of(as_admin, user.email)["admin"] is True
    demoted = as_admin("PATCH", f"/admin/users/{user_id}", json={"admin": False})
    assert demoted.status_code == 200
    revoked = as_admin("POST", f"/admin/users/{user_id}/revoke")
    assert revoked.status_code == 204
    wait_until(
        lambda: (
            requests.get(f"{system.gateway}/jobs", headers=user.headers, timeout=30).status_code
            == 401
        ),
        timeout=REVOKED_WITHIN_S,
    )

    assert [action for _, action, _ in audit_of(as_admin, user.email)] == [
        "user.demote",
        "user.promote",
    ]
    assert [action for _, action, _ in audit_of(as_admin, f"user {user_id}")] == ["user.revoke"]
    self_id = row_of(as_admin, ADMIN[0])["id"]
    refused = as_admin("PATCH", f"/admin/users/{self_id}", json={"disabled": True})
    assert refused.status_code == 400
    assert refused.json()["error"] == "cannot_change_self"


def test_a_quota_override_holds_at_the_next_upload(system, as_admin, clip):
    user, neighbour = new_user(system), new_user(system)
    user_id = row_of(as_admin, user.email)["id"]
    small = len(clip) // 2  # the default (10 GiB) would take the clip

    set_small = as_admin(
        "PUT",
        f"/admin/users/{user_id}/quotas",
        json={"email": user.email, "stored_bytes": small, "active_jobs": 3},
    )

    assert set_small.status_code == 200, set_small.text
    assert account(system, user)["quotas"]["stored_bytes"] == small
    assert account(system, user)["quotas"]["active_jobs"] == 3
    refused = upload(system, user, clip)
    assert refused.status_code == 507, refused.text
    assert (refused.json()["quota"], refused.json()["limit"]) == ("stored_bytes", small)
    assert upload(system, neighbour, clip).status_code == 202
    assert row_of(as_admin, user.email)["quota_overrides"] == {
        "stored_bytes": small,
        "active_jobs": 3,
        "uploads_per_minute": None,
    }

    reset = as_admin(
        "PUT", f"/admin/users/{user_id}/quotas", json={"email": user.email, "stored_bytes": None}
    )
    assert reset.status_code == 200
    assert account(system, user)["quotas"] == account(system, neighbour)["quotas"]
    assert upload(system, user, clip).status_code == 202
    assert [(action, d["stored_bytes"]) for _, action, d in audit_of(as_admin, user.email)] == [
        ("quotas.set", None),
        ("quotas.set", small),
    ]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"stored_bytes": 5}, 400, "invalid_email"),
        ({"email": "someone-else@e2e.test", "stored_bytes": 5}, 404, "not_found"),
        ({"email": None, "stored_bytes": -1}, 400, "invalid_quota"),
        ({"email": None, "stored_bytes": "5"}, 400, "invalid_quota"),
        ({"email": None, "active_jobs": True}, 400, "invalid_quota"),
        ({"email": None, "stored_bytes": 2**53 + 1}, 400, "invalid_quota"),
        ({"email": None, "speed": 5}, 400, "invalid_request"),
    ],
)
def test_bad_quotas_are_refused_and_change_nothing(system, as_admin, body, status, code):
    user = new_user(system)
    user_id = row_of(as_admin, user.email)["id"]
    if "email" in body and body["email"] is None:
        body = {**body, "email": user.email}

    response = as_admin("PUT", f"/admin/users/{user_id}/quotas", json=body)

    assert response.status_code == status
    assert response.json()["error"] == code
    assert row_of(as_admin, user.email)["quota_overrides"]["stored_bytes"] is None
    assert audit_of(as_admin, user.email) == []


def test_deleting_a_user_erases_their_jobs_files_and_quotas(system, as_admin, clip):
    user = new_user(system)
    user_id = row_of(as_admin, user.email)["id"]
    converted(system, user, clip)
    as_admin("PUT", f"/admin/users/{user_id}/quotas", json={"email": user.email, "active_jobs": 5})

    unconfirmed = as_admin("DELETE", f"/admin/users/{user_id}", json={})
    wrong = as_admin("DELETE", f"/admin/users/{user_id}", json={"confirm": ADMIN[0]})
    assert (unconfirmed.status_code, unconfirmed.json()["error"]) == (400, "confirmation_required")
    assert (wrong.status_code, wrong.json()["error"]) == (404, "not_found")
    assert login_status(system, user) == 200

    deleted = as_admin("DELETE", f"/admin/users/{user_id}", json={"confirm": user.email})

    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"status": "deleted"}
    assert login_status(system, user) == 401
    assert system.videos["jobs"].count_documents({"owner": user.email}) == 0
    assert system.videos["fs.files"].count_documents({"metadata.owner": user.email}) == 0
    assert system.mp3s["fs.files"].count_documents({"metadata.owner": user.email}) == 0
    assert system.videos["quotas"].count_documents({"_id": user.email}) == 0
    assert as_admin("GET", "/admin/users", params={"q": user.email}).json()["users"] == []
    assert [(action, d) for _, action, d in audit_of(as_admin, user.email)] == [
        ("user.delete", {"id": user_id, "status": "deleted"}),
        (
            "quotas.set",
            {"id": user_id, "stored_bytes": None, "active_jobs": 5, "uploads_per_minute": None},
        ),
    ]
