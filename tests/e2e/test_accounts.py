"""Accounts through the running stack: API keys, revocation, password, export, deletion.

Every bound is measured on the shipped settings: the gateway polls auth's revocations
every 10 s (REVOCATION_POLL_SECONDS) and trusts auth's word on a key for 15 s
(API_KEY_CACHE_SECONDS), so each revocation must bite within 30 s.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import pytest
import requests
from bson import ObjectId

from common.config import MongoConfig
from common.jobs import JobStore
from common.mongo import utcnow
from tests.e2e.test_pipeline import upload, wait_for_mail
from tests.support.media import make_video
from tests.support.system import User, login, new_user

REVOCATION_BOUND = 30.0
# Longer than a revocation poll (10 s) and a key's time in the cache (15 s), plus an answer.
TOKEN_SETTLE = 12.0
KEY_SETTLE = 17.0
JSON_EXPORT = "application/json"

pytestmark = pytest.mark.slow


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_key(system, user: User, *scopes: str, name: str = "ci") -> dict:
    response = requests.post(
        f"{system.gateway}/api-keys",
        json={"name": name, "scopes": list(scopes), "expires_in_days": None},
        headers=user.headers,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"
    return response.json()


def assert_insufficient(response: requests.Response, required: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "insufficient_scope"
    assert response.json()["required"] == required


def seconds_until_refused(system, headers: dict[str, str], *, held_for: float) -> float:
    """Return how long after now the gateway last accepted ``headers``; fail past the bound.

    The gateway runs several processes, each with its own list and cache, and a request
    reaches any of them: the credential counts as refused once every answer has been 401
    for ``held_for`` seconds, longer than any process can go on accepting it
    (a revocation poll, or a key's time in the cache).
    """
    started = time.monotonic()
    last_accepted = 0.0
    while time.monotonic() - started < REVOCATION_BOUND + held_for:
        response = requests.get(f"{system.gateway}/jobs", headers=headers, timeout=10)
        now = time.monotonic() - started
        if response.status_code == 200:
            last_accepted = now
        else:
            assert response.status_code == 401, response.text
            if now - last_accepted >= held_for:
                return last_accepted
        time.sleep(0.25)
    raise AssertionError(f"still accepted {last_accepted:.1f} s after revocation")


def test_a_keys_scopes_decide_what_it_may_do(system, user, tmp_path):
    reader = create_key(system, user, "jobs:read")
    writer = create_key(system, user, "jobs:write", name="uploader")
    assert reader["key"].startswith(f"v2m_{reader['id']}_")
    read, write = bearer(reader["key"]), bearer(writer["key"])
    video = make_video(tmp_path / "clip.mp4", seconds=1)

    assert requests.get(f"{system.gateway}/jobs", headers=read, timeout=10).status_code == 200
    with open(video, "rb") as body:
        refused = requests.post(
            f"{system.gateway}/upload", headers=read, files={"file": body}, timeout=30
        )
    assert_insufficient(refused, "jobs:write")
    accepted = upload(system, User(user.email, "", writer["key"]), video)
    assert accepted.status_code == 202, accepted.text
    assert_insufficient(
        requests.get(f"{system.gateway}/jobs", headers=write, timeout=10), "jobs:read"
    )

    # No key manages keys or the account, whatever its scopes.
    for headers in (read, write):
        assert_insufficient(
            requests.post(
                f"{system.gateway}/api-keys",
                json={"name": "x", "scopes": ["jobs:read"]},
                headers=headers,
                timeout=10,
            ),
            "session",
        )
        assert_insufficient(
            requests.post(
                f"{system.gateway}/me/password",
                json={"current_password": user.password, "new_password": "n3w-password-x"},
                headers=headers,
                timeout=10,
            ),
            "session",
        )

    me = requests.get(f"{system.gateway}/me", headers=read, timeout=10).json()
    assert (me["email"], me["auth"], me["scopes"], me["key_id"]) == (
        user.email,
        "api_key",
        ["jobs:read"],
        reader["id"],
    )
    assert me["admin"] is False
    session_me = requests.get(f"{system.gateway}/me", headers=user.headers, timeout=10).json()
    assert (session_me["auth"], session_me["scopes"], session_me["key_id"]) == (
        "session",
        None,
        None,
    )

    listed = requests.get(f"{system.gateway}/api-keys", headers=user.headers, timeout=10)
    # Newest first, but these two were made within the same second (auth's created_at).
    assert sorted(key["id"] for key in listed.json()["keys"]) == sorted(
        [writer["id"], reader["id"]]
    )
    assert "key" not in listed.text.replace('"keys"', "")


def test_a_revoked_key_stops_working_within_30_seconds(system, user):
    created = create_key(system, user, "jobs:read")
    headers = bearer(created["key"])
    assert requests.get(f"{system.gateway}/jobs", headers=headers, timeout=10).status_code == 200

    revoked = requests.delete(
        f"{system.gateway}/api-keys/{created['id']}", headers=user.headers, timeout=10
    )
    assert revoked.status_code == 204, revoked.text

    assert seconds_until_refused(system, headers, held_for=KEY_SETTLE) <= REVOCATION_BOUND
    again = requests.delete(
        f"{system.gateway}/api-keys/{created['id']}", headers=user.headers, timeout=10
    )
    assert again.status_code == 404


def test_a_password_change_ends_the_other_sessions_within_30_seconds(system, user):
    other = bearer(login(system.gateway, user.email, user.password))
    changed = requests.post(
        f"{system.gateway}/me/password",
        json={"current_password": user.password, "new_password": "a-new-password-123"},
        headers=user.headers,
        timeout=30,
    )
    assert changed.status_code == 200, changed.text
    new_token = bearer(changed.json()["token"])

    elapsed = seconds_until_refused(system, other, held_for=TOKEN_SETTLE)

    assert elapsed <= REVOCATION_BOUND
    refused = requests.get(f"{system.gateway}/jobs", headers=other, timeout=10)
    assert refused.json()["error"] == "token_revoked"
    assert requests.get(f"{system.gateway}/jobs", headers=new_token, timeout=10).status_code == 200
    login(system.gateway, user.email, "a-new-password-123")


def test_a_wrong_current_password_changes_nothing(system, user):
    refused = requests.post(
        f"{system.gateway}/me/password",
        json={"current_password": "not-it", "new_password": "a-new-password-123"},
        headers=user.headers,
        timeout=30,
    )
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_credentials"
    login(system.gateway, user.email, user.password)


def test_logging_out_ends_that_session_only(system, user):
    other = bearer(login(system.gateway, user.email, user.password))
    out = requests.post(f"{system.gateway}/logout", headers=user.headers, timeout=10)
    assert out.status_code == 204, out.text

    assert seconds_until_refused(system, user.headers, held_for=TOKEN_SETTLE) <= REVOCATION_BOUND
    assert requests.get(f"{system.gateway}/jobs", headers=other, timeout=10).status_code == 200


def recorded_jobs(system, owner: str, count: int) -> list[str]:
    """Record ``count`` failed jobs of ``owner``, a second apart, as the services would.

    More than a page of jobs through uploads would mean as many conversions; the
    export reads the records, which is what these are (failed: the janitor leaves them).
    """
    jobs = JobStore(system.mongo, MongoConfig(videos_db=system.env["MONGO_VIDEOS_DB"]))
    ids = []
    start = utcnow() - timedelta(hours=1)
    for number in range(count):
        job_id = f"{uuid.uuid4().hex[:8]}-{number:04d}"
        jobs.create(
            job_id=job_id,
            owner=owner,
            video_fid=ObjectId(),
            filename=f"{number}.mp4",
            size=1,
            options={},
        )
        moment = start + timedelta(seconds=number)
        system.videos["jobs"].update_one(
            {"_id": job_id},
            {
                "$set": {
                    "created_at": moment,
                    "enqueued_at": moment,
                    "status": "failed",
                    "error": "a test record",
                    "finished_at": moment,
                }
            },
        )
        ids.append(job_id)
    return ids


def test_the_export_holds_every_job_newest_first(system, user):
    ids = recorded_jobs(system, user.email, 130)  # more than a page (100) of the export
    reader = bearer(create_key(system, user, "jobs:read")["key"])

    response = requests.get(f"{system.gateway}/me/export", headers=reader, timeout=30)

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith(JSON_EXPORT)
    assert response.headers["Content-Disposition"].startswith(
        'attachment; filename="video2mp3-export-'
    )
    export = json.loads(response.content)
    assert export["account"] == {"email": user.email, "admin": False}
    assert [job["job_id"] for job in export["jobs"]] == ids[::-1]
    assert export["jobs"][0]["filename"] == "129.mp4"


def files_of(system, job_ids: list[str]) -> tuple[list, list]:
    jobs = list(system.videos["jobs"].find({"_id": {"$in": job_ids}}))
    return [job["video_fid"] for job in jobs], [
        job["mp3_fid"] for job in jobs if job.get("mp3_fid")
    ]


def test_deleting_the_account_erases_its_jobs_and_files_and_frees_the_address(
    system, mail_sink, tmp_path
):
    user = new_user(system)
    job_ids = []
    for number in range(2):
        accepted = upload(system, user, make_video(tmp_path / f"v{number}.mp4", seconds=1))
        assert accepted.status_code == 202, accepted.text
        job_ids.append(accepted.json()["job_id"])
    wait_for_mail(mail_sink, user, count=2)
    videos, mp3s = files_of(system, job_ids)
    assert len(videos) == len(mp3s) == 2
    key = bearer(create_key(system, user, "jobs:read", "jobs:write")["key"])
    url = f"{system.gateway}/me"

    for body in (None, {"confirm": "someone-else@e2e.test"}, {"confirm": ""}):
        refused = requests.delete(url, json=body, headers=user.headers, timeout=10)
        assert refused.status_code == 400
        assert refused.json()["error"] == "confirmation_required"
    assert_insufficient(
        requests.delete(url, json={"confirm": user.email}, headers=key, timeout=10), "session"
    )

    deleted = requests.delete(url, json={"confirm": user.email}, headers=user.headers, timeout=30)

    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"status": "deleted"}
    assert system.videos["jobs"].count_documents({"owner": user.email}) == 0
    assert system.videos["fs.files"].count_documents({"_id": {"$in": videos}}) == 0
    assert system.videos["fs.chunks"].count_documents({"files_id": {"$in": videos}}) == 0
    assert system.mp3s["fs.files"].count_documents({"_id": {"$in": mp3s}}) == 0
    assert system.mp3s["fs.chunks"].count_documents({"files_id": {"$in": mp3s}}) == 0
    record = system.videos["account_deletions"].find_one({"_id": user.email})
    assert record["state"] == "done"
    assert seconds_until_refused(system, user.headers, held_for=TOKEN_SETTLE) <= REVOCATION_BOUND
    assert seconds_until_refused(system, key, held_for=KEY_SETTLE) <= REVOCATION_BOUND

    again = requests.post(
        f"{system.auth}/users",
        json={"email": user.email, "password": "another-password-1"},
        headers=bearer(system.admin_token),
        timeout=30,
    )
    assert again.status_code == 201, again.text
    fresh = bearer(login(system.gateway, user.email, "another-password-1"))
    listed = requests.get(f"{system.gateway}/jobs", headers=fresh, timeout=10).json()
    assert listed["total"] == 0
