"""Bring a test user to a quota without waiting for real uploads and conversions.

The gateway counts a user's active and recent jobs in the ``jobs`` collection
and sums the lengths of their GridFS files, so records inserted there fill a
quota at once. No message is published for them, so no converter takes one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

import requests
from bson import ObjectId

from common.config import MongoConfig
from common.jobs import DONE, QUEUED, JobStore, new_job_id
from common.mongo import utcnow
from tests.support.system import System, User


def account(system: System, user: User) -> dict:
    """Return the user's ``GET /me``: email, admin, usage and quotas."""
    response = requests.get(f"{system.gateway}/me", headers=user.headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


@contextlib.contextmanager
def active_jobs_filled(system: System, user: User) -> Iterator[list[str]]:
    """Give ``user`` as many queued jobs as the quota allows; remove them on leaving.

    Yields the ids of the records, so a test can remove them earlier itself.
    """
    limit = account(system, user)["quotas"]["active_jobs"]
    assert limit, "the test user has no active-jobs quota to fill"
    # Created before the upload-rate window, so they fill only the active-jobs quota.
    with jobs_inserted(system, user.email, limit, status=QUEUED, age=timedelta(minutes=5)) as ids:
        yield ids


@contextlib.contextmanager
def upload_rate_filled(system: System, user: User) -> Iterator[list[str]]:
    """Give ``user`` as many jobs created just now as a minute allows, all finished."""
    limit = account(system, user)["quotas"]["uploads_per_minute"]
    assert limit, "the test user has no upload-rate quota to fill"
    with jobs_inserted(system, user.email, limit, status=DONE, age=timedelta(seconds=1)) as ids:
        yield ids


@contextlib.contextmanager
def jobs_inserted(
    system: System, owner: str, count: int, *, status: str, age: timedelta
) -> Iterator[list[str]]:
    """Record ``count`` jobs of ``owner`` created ``age`` ago, in ``status``, on no real file.

    They are marked enqueued, so the converters' janitor never takes them for
    abandoned uploads; they are deleted on leaving. Yields their ids.
    """
    store = JobStore(system.mongo, system_mongo_config(system))
    ids = [
        store.create(
            job_id=new_job_id(),
            owner=owner,
            video_fid=ObjectId(),
            filename=f"placeholder {number}.mp4",
            size=0,
            options={},
        )["_id"]
        for number in range(1, count + 1)
    ]
    created = utcnow() - age
    jobs = system.videos["jobs"]
    jobs.update_many(
        {"_id": {"$in": ids}},
        {"$set": {"status": status, "created_at": created, "enqueued_at": created}},
    )
    try:
        yield ids
    finally:
        jobs.delete_many({"_id": {"$in": ids}})


def system_mongo_config(system: System) -> MongoConfig:
    """Return the MongoDB settings the running system's services use."""
    return MongoConfig(
        uri=system.env["MONGO_URI"],
        videos_db=system.env["MONGO_VIDEOS_DB"],
        mp3s_db=system.env["MONGO_MP3S_DB"],
    )


@contextlib.contextmanager
def storage_filled(system: System, user: User, *, leave: int = 0) -> Iterator[None]:
    """Make ``user``'s stored files add up to the storage quota less ``leave`` bytes.

    The gateway sums the lengths of the user's GridFS files, so one file record
    (with no chunks behind it) of that length fills it; it is removed on leaving.
    """
    limit = account(system, user)["quotas"]["stored_bytes"]
    assert limit, "the test user has no storage quota to fill"
    files = system.videos["fs.files"]
    record = {
        "_id": ObjectId(),
        "length": limit - leave,
        "chunkSize": 255 * 1024,
        "uploadDate": utcnow(),
        "filename": "placeholder.mp4",
        "metadata": {"owner": user.email},
    }
    files.insert_one(record)
    try:
        yield
    finally:
        files.delete_one({"_id": record["_id"]})
