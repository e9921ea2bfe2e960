"""One user cannot take more than their share: storage, jobs in flight, upload rate.

Through the running system with the shipped quotas (10 GiB stored, 10 jobs queued or
processing, 20 uploads a minute; none is changed here). A user is brought to the edge
of a quota by records written straight into MongoDB (``tests/support/quotas.py``: jobs, or
a stored file's record), which is what the gateway counts, so no test has to upload 10 GiB
or wait a minute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests

from common.jobs import DONE, QUEUED
from gateway.quotas import ACTIVE_JOBS_RETRY_AFTER_S, RATE_WINDOW, Quotas
from tests.support.media import make_video
from tests.support.quotas import (
    account,
    active_jobs_filled,
    jobs_inserted,
    storage_filled,
    upload_rate_filled,
)
from tests.support.system import ADMIN, System, User, new_user

QUOTAS = Quotas()  # what the stack runs with: the defaults


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("quota") / "clip.mp4"
    make_video(path, seconds=1.0)
    return path.read_bytes()


def upload(system: System, token_headers: dict[str, str], clip: bytes) -> requests.Response:
    return requests.post(
        f"{system.gateway}/upload",
        headers=token_headers,
        files={"file": ("clip.mp4", clip)},
        timeout=60,
    )


def jobs_of(system: System, owner: str) -> int:
    return system.videos["jobs"].count_documents({"owner": owner})


def test_me_reports_real_usage_against_the_default_quotas(system, clip):
    user = new_user(system)
    assert account(system, user) == {
        "email": user.email,
        "admin": False,
        "auth": "session",
        "scopes": None,
        "key_id": None,
        "usage": {"stored_bytes": 0, "active_jobs": 0, "uploads_last_minute": 0},
        "quotas": QUOTAS.as_dict(),
    }
    accepted = upload(system, user.headers, clip)
    assert accepted.status_code == 202, accepted.text
    job_url = f"{system.gateway}{accepted.json()['status_url']}"
    deadline = time.monotonic() + 60
    while (job := requests.get(job_url, headers=user.headers, timeout=30).json())["status"] != DONE:
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    mp3 = system.mp3s["fs.files"].find_one({"metadata.owner": user.email})
    assert account(system, user)["usage"] == {
        "stored_bytes": len(clip) + mp3["length"],
        "active_jobs": 0,
        "uploads_last_minute": 1,
    }


def test_the_upload_past_the_rate_gets_429_with_when_to_retry(system, clip):
    user = new_user(system)
    with upload_rate_filled(system, user):
        refused = upload(system, user.headers, clip)
        assert jobs_of(system, user.email) == QUOTAS.uploads_per_minute  # nothing new recorded

    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["error"] == "upload_rate_exceeded"
    assert (body["quota"], body["limit"], body["usage"]) == ("uploads_per_minute", 20, 20)
    assert 55 <= int(refused.headers["Retry-After"]) <= 60  # the oldest leaves the window then


def test_an_upload_past_the_jobs_in_flight_gets_429_until_one_finishes(system, clip):
    user = new_user(system)
    with active_jobs_filled(system, user) as queued:
        refused = upload(system, user.headers, clip)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "too_many_active_jobs"
        assert refused.headers["Retry-After"] == str(ACTIVE_JOBS_RETRY_AFTER_S)
        assert account(system, user)["usage"]["active_jobs"] == QUOTAS.active_jobs

        system.videos["jobs"].update_one({"_id": queued[0]}, {"$set": {"status": DONE}})
        assert upload(system, user.headers, clip).status_code == 202


@pytest.fixture
def nearly_full(system: System) -> Iterator[User]:
    """A user whose stored files leave 1000 bytes of the storage quota."""
    user = new_user(system)
    with storage_filled(system, user, leave=1000):
        yield user


def test_an_upload_that_does_not_fit_gets_507_before_its_body(system, clip, nearly_full):
    assert len(clip) > 1000
    refused = upload(system, nearly_full.headers, clip)

    assert refused.status_code == 507, refused.text
    body = refused.json()
    assert body["error"] == "storage_quota_exceeded"
    assert (body["quota"], body["limit"]) == ("stored_bytes", QUOTAS.stored_bytes)
    assert "Delete finished jobs" in body["message"]
    assert jobs_of(system, nearly_full.email) == 0
    assert account(system, nearly_full)["usage"]["stored_bytes"] == QUOTAS.stored_bytes - 1000


def test_an_upload_without_a_length_is_cut_at_the_quota_and_leaves_nothing(
    system, clip, nearly_full
):
    boundary = "quota-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + clip
        + f"\r\n--{boundary}--\r\n".encode()
    )
    pieces = (body[i : i + 512] for i in range(0, len(body), 512))  # chunked: no length

    refused = requests.post(
        f"{system.gateway}/upload",
        headers={
            **nearly_full.headers,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
        data=pieces,
        timeout=60,
    )

    assert refused.status_code == 507, refused.text
    assert refused.json()["error"] == "storage_quota_exceeded"
    assert jobs_of(system, nearly_full.email) == 0
    assert system.videos["fs.files"].count_documents({"metadata.owner": nearly_full.email}) == 1


def test_admins_have_no_quotas(system, clip):
    admin = User(*ADMIN, token=system.admin_token)
    past_every_quota = QUOTAS.active_jobs + QUOTAS.uploads_per_minute
    with jobs_inserted(system, admin.email, past_every_quota, status=QUEUED, age=timedelta(0)):
        answer = account(system, admin)
        assert answer["admin"] is True
        assert set(answer["quotas"].values()) == {None}
        assert answer["usage"]["active_jobs"] >= past_every_quota

        accepted = upload(system, admin.headers, clip)
        assert accepted.status_code == 202, accepted.text


def test_the_rate_window_is_a_minute(system, clip):
    user = new_user(system)
    # As many uploads as a minute allows, begun just over a minute ago, no longer count.
    age = RATE_WINDOW + timedelta(seconds=1)
    with jobs_inserted(system, user.email, QUOTAS.uploads_per_minute, status=DONE, age=age):
        assert account(system, user)["usage"]["uploads_last_minute"] == 0
        assert upload(system, user.headers, clip).status_code == 202
