"""Deleted accounts: the ``account_deletions`` records and the erasing of an owner's data.

Deleting an account (``DELETE /me``) takes three steps that can each be cut short:
the gateway records the request (state ``requested``), auth deletes the user
(then the record is ``confirmed``), and the owner's jobs and files go, as many as
fit in the request, the rest by the converters' janitor in batches (then
``done``). Only jobs created before the request are erased: the address may be
registered again at once, and the new account's jobs are not the old one's.

A record still ``requested`` means auth has not deleted the user (it failed, or
the gateway died before hearing back): no data is erased for it, a later
``DELETE /me`` tries again, and the janitor drops it after ``STALE_AFTER``.
A ``done`` record is kept as long, then dropped too: it names the address.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

import pymongo
import pymongo.collection

from common.config import MongoConfig
from common.jobs import JobStore
from common.mongo import translate_errors, utcnow
from common.storage import Storage

log = logging.getLogger(__name__)

COLLECTION = "account_deletions"
REQUESTED, CONFIRMED, DONE = "requested", "confirmed", "done"
STALE_AFTER = timedelta(days=1)
ERASE_BATCH = 50


class AccountDeletions:
    """Record account deletions and erase the deleted owners' jobs and files."""

    def __init__(self, client: pymongo.MongoClient, config: MongoConfig) -> None:
        self._records: pymongo.collection.Collection = client[config.videos_db][COLLECTION]

    def request(self, owner: str) -> datetime:
        """Record that ``owner`` asked to be deleted, and return when (what erasing spares).

        Raises:
            TransientError: MongoDB failed.
        """
        now = utcnow()
        # MongoDB keeps milliseconds: the next one up spares no job made before this call.
        now = now.replace(microsecond=now.microsecond // 1000 * 1000) + timedelta(milliseconds=1)
        with translate_errors("recording an account deletion"):
            self._records.update_one(
                {"_id": owner},
                {"$set": {"state": REQUESTED, "requested_at": now}, "$unset": {"done_at": ""}},
                upsert=True,
            )
        return now

    def confirm(self, owner: str) -> None:
        """Mark ``owner``'s deletion confirmed: auth has deleted the user.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("confirming an account deletion"):
            self._records.update_one(
                {"_id": owner, "state": REQUESTED}, {"$set": {"state": CONFIRMED}}
            )

    def finish(self, owner: str, requested_at: datetime) -> None:
        """Mark ``owner``'s deletion done, unless it was requested again since.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("finishing an account deletion"):
            self._records.update_one(
                {"_id": owner, "state": CONFIRMED, "requested_at": requested_at},
                {"$set": {"state": DONE, "done_at": utcnow()}},
            )

    def confirmed(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Return up to ``limit`` confirmed deletions still to finish, oldest first.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("finding account deletions"):
            cursor = self._records.find({"state": CONFIRMED}).sort("requested_at", 1).limit(limit)
            return list(cursor)

    def drop_stale(self) -> int:
        """Drop requests auth never confirmed, and finished records, past ``STALE_AFTER``.

        Raises:
            TransientError: MongoDB failed.
        """
        moment = utcnow() - STALE_AFTER
        with translate_errors("dropping old account deletions"):
            return self._records.delete_many(
                {
                    "$or": [
                        {"state": REQUESTED, "requested_at": {"$lt": moment}},
                        {"state": DONE, "done_at": {"$lt": moment}},
                    ]
                }
            ).deleted_count


def erase(
    owner: str,
    requested_at: datetime,
    *,
    jobs: JobStore,
    storage: Storage,
    time_limit: float | None = None,
    limit: int | None = None,
) -> int:
    """Delete ``owner``'s jobs made before ``requested_at`` and their files; return how many remain.

    Each job's files go before its record, so a deletion cut short is found again
    and finished. Stops after ``limit`` jobs, or after the job that passes
    ``time_limit`` seconds, if either is given.

    Raises:
        TransientError: MongoDB failed.
    """
    deadline = None if time_limit is None else time.monotonic() + time_limit
    erased = 0
    while batch := jobs.owned_before(owner, requested_at, limit=ERASE_BATCH):
        for job in batch:
            storage.delete_files_of(job)
            jobs.delete(job["_id"])
            erased += 1
            out_of_time = deadline is not None and time.monotonic() >= deadline
            if out_of_time or erased == limit:
                remaining = jobs.count_owned_before(owner, requested_at)
                log.info("erased %d jobs of a deleted account, %d to go", erased, remaining)
                return remaining
    log.info("erased %d jobs of a deleted account, none to go", erased)
    return 0
