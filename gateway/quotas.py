"""Per-user quotas: how much one user may store, have converting, and upload per minute.

Checked when an upload starts, before its body is read, from what MongoDB holds: the
bytes of the user's files in both buckets, the user's queued and processing jobs, and
the jobs the user created in the last minute. Every gateway replica sees the same
counts, so the quotas hold across workers and pods. They are soft by a few uploads:
uploads that start at the same moment are all checked against the usage before any of
them, and an upload sent without a Content-Length is bounded by the bytes left as it
streams. Admins have none.

An admin may set one user's quotas apart from the defaults (``PUT /admin/users/<id>/quotas``):
those overrides live in MongoDB ``quotas``, ``{_id: email, <quota>: int}``, a quota left
out there being the default, and are read with every check, so a change holds at once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import pymongo

from common.config import Env, MongoConfig, Settings, setting
from common.http.errors import ApiError
from common.jobs import JobStore
from common.mongo import translate_errors
from common.storage import Storage

# The window of the upload rate.
RATE_WINDOW = timedelta(minutes=1)
# When a user at the active-jobs quota may try again: no one knows when a job ends, and a
# typical conversion takes seconds (docs/performance.md), so a short wait, not a minute.
ACTIVE_JOBS_RETRY_AFTER_S = 15
# The collection of per-user overrides, and the quotas one may set.
OVERRIDES_COLLECTION = "quotas"
QUOTA_NAMES = ("stored_bytes", "active_jobs", "uploads_per_minute")


@dataclass(frozen=True, slots=True)
class Quotas(Settings):
    """One user's limits; None is unlimited (0 in the environment)."""

    # Five uploads of the largest size, kept RETENTION_DAYS (30) with their MP3s.
    stored_bytes: int | None = setting(
        "QUOTA_STORAGE_BYTES", 10 * 1024**3, read=Env.size, unlimited_at_zero=True
    )
    # More are queued behind the converters anyway; ten keeps a batch moving
    # without letting one user's hundred files hold everyone else's back.
    active_jobs: int | None = setting("QUOTA_ACTIVE_JOBS", 10, minimum=0, unlimited_at_zero=True)
    # Far above what a person does, low enough that a script cannot flood the queue.
    uploads_per_minute: int | None = setting(
        "QUOTA_UPLOADS_PER_MINUTE", 20, minimum=0, unlimited_at_zero=True
    )

    def as_dict(self) -> dict[str, int | None]:
        """Return the quotas as the API shows them (null for unlimited)."""
        return {
            "stored_bytes": self.stored_bytes,
            "active_jobs": self.active_jobs,
            "uploads_per_minute": self.uploads_per_minute,
        }

    def overridden(self, override: Mapping[str, int]) -> Quotas:
        """Return these quotas with each one a user's override sets in place of the default."""
        return dataclasses.replace(
            self, **{name: override[name] for name in QUOTA_NAMES if name in override}
        )


UNLIMITED = Quotas(stored_bytes=None, active_jobs=None, uploads_per_minute=None)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one user has stored and running, and how many uploads they began lately."""

    stored_bytes: int
    active_jobs: int
    uploads_last_minute: int
    oldest_recent_upload: datetime | None

    def as_dict(self) -> dict[str, int]:
        """Return the usage as the API shows it."""
        return {
            "stored_bytes": self.stored_bytes,
            "active_jobs": self.active_jobs,
            "uploads_last_minute": self.uploads_last_minute,
        }


class QuotaOverrides:
    """The quotas admins set for single users, apart from the defaults."""

    def __init__(self, client: pymongo.MongoClient, config: MongoConfig) -> None:
        self._overrides = client[config.videos_db][OVERRIDES_COLLECTION]

    def of(self, owner: str) -> dict[str, int]:
        """Return the quotas set for ``owner`` (none: an empty dict).

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("reading quota overrides"):
            found = self._overrides.find_one({"_id": owner})
        return _override(found) if found else {}

    def of_owners(self, owners: Iterable[str]) -> dict[str, dict[str, int]]:
        """Return the quotas set for each of ``owners`` that has any, in one query.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("reading quota overrides"):
            found = list(self._overrides.find({"_id": {"$in": list(owners)}}))
        return {doc["_id"]: _override(doc) for doc in found}

    def set(self, owner: str, quotas: Mapping[str, int | None]) -> None:
        """Set ``owner``'s quotas: a number overrides the default, None restores it.

        Raises:
            TransientError: MongoDB failed.
        """
        chosen = {name: quotas[name] for name in QUOTA_NAMES if quotas.get(name) is not None}
        with translate_errors("setting quota overrides"):
            if chosen:
                self._overrides.replace_one({"_id": owner}, {"_id": owner, **chosen}, upsert=True)
            else:
                self._overrides.delete_one({"_id": owner})

    def forget(self, owner: str) -> None:
        """Drop ``owner``'s overrides (their account is gone; the address may come back).

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("dropping quota overrides"):
            self._overrides.delete_one({"_id": owner})


def _override(doc: Mapping[str, object]) -> dict[str, int]:
    return {name: int(doc[name]) for name in QUOTA_NAMES if isinstance(doc.get(name), int)}


def measure(storage: Storage, jobs: JobStore, owner: str, now: datetime) -> Usage:
    """Read ``owner``'s usage from MongoDB.

    Raises:
        TransientError: MongoDB failed.
    """
    activity = jobs.activity(owner, since=now - RATE_WINDOW)
    return Usage(
        stored_bytes=storage.videos.bytes_of(owner) + storage.mp3s.bytes_of(owner),
        active_jobs=activity.active_jobs,
        uploads_last_minute=activity.recent_jobs,
        oldest_recent_upload=activity.oldest_recent,
    )


def check_upload(
    usage: Usage, quotas: Quotas, *, incoming_bytes: int | None, now: datetime
) -> int | None:
    """Refuse an upload that would break a quota; return the bytes it may still store.

    ``incoming_bytes`` is the request's Content-Length, when it has one.

    Raises:
        ApiError: 429 ``upload_rate_exceeded`` or ``too_many_active_jobs`` with
            Retry-After, or 507 ``storage_quota_exceeded``.
    """
    if quotas.uploads_per_minute is not None and (
        usage.uploads_last_minute >= quotas.uploads_per_minute
    ):
        oldest = usage.oldest_recent_upload or now
        wait = max(1, math.ceil((oldest + RATE_WINDOW - now).total_seconds()))
        raise _refused(
            429,
            "upload_rate_exceeded",
            f"You may start {quotas.uploads_per_minute} uploads a minute; try again in {wait} s.",
            "uploads_per_minute",
            quotas.uploads_per_minute,
            usage.uploads_last_minute,
            retry_after=wait,
        )
    if quotas.active_jobs is not None and usage.active_jobs >= quotas.active_jobs:
        raise _refused(
            429,
            "too_many_active_jobs",
            f"You have {usage.active_jobs} conversions queued or running, the most at once; "
            "upload again when one has finished.",
            "active_jobs",
            quotas.active_jobs,
            usage.active_jobs,
            retry_after=ACTIVE_JOBS_RETRY_AFTER_S,
        )
    if quotas.stored_bytes is None:
        return None
    left = quotas.stored_bytes - usage.stored_bytes
    if left <= 0 or (incoming_bytes is not None and incoming_bytes > left):
        raise storage_exceeded(quotas, usage)
    return left


def storage_exceeded(quotas: Quotas, usage: Usage) -> ApiError:
    """Return the 507 for an upload that does not fit in what the user may store."""
    return _refused(
        507,
        "storage_quota_exceeded",
        f"This upload does not fit in your storage: {_size(usage.stored_bytes)} of "
        f"{_size(quotas.stored_bytes or 0)} used. Delete finished jobs to make room.",
        "stored_bytes",
        quotas.stored_bytes,
        usage.stored_bytes,
    )


def _refused(
    status: int,
    code: str,
    message: str,
    quota: str,
    limit: int | None,
    used: int,
    *,
    retry_after: int | None = None,
) -> ApiError:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return ApiError(
        status,
        code,
        message,
        headers=headers,
        extra={"quota": quota, "limit": limit, "usage": used},
    )


def _size(count: int) -> str:
    """Say a byte count the way people read it: "1.2 GiB"."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
