"""The notifier's delivery ledger: who was told about which job, and who is telling them now.

It lives on the job records (the ``jobs`` collection ``common.jobs`` owns) so that a
deleted job takes its deliveries with it. Each way of telling the owner (``EMAIL``,
``WEBHOOK``) is claimed with a lease before it is attempted and marked delivered
after: a redelivered message repeats neither, and a worker that dies mid-send only
delays it until its lease lapses.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pymongo

from common.config import MongoConfig
from common.jobs import jobs_collection
from common.mongo import translate_errors, utcnow

EMAIL, WEBHOOK = "email", "webhook"
# How the owner is told about a finished job: (done-at field, claim-lease field).
_DELIVERIES = {
    EMAIL: ("notified_at", "notify_lease_until"),
    WEBHOOK: ("webhook_done_at", "webhook_lease_until"),
}


def is_delivered(job: Mapping[str, Any], kind: str) -> bool:
    """Tell whether a job's record says its owner was told by ``kind`` (or refused for good)."""
    return job.get(_DELIVERIES[kind][0]) is not None


def is_webhook_queued(job: Mapping[str, Any]) -> bool:
    """Tell whether a job's record says its webhook call was handed to its own queue."""
    return job.get("webhook_queued_at") is not None


class DeliveryLedger:
    """Claim, release and record the email and webhook of each finished job."""

    def __init__(self, client: pymongo.MongoClient, config: MongoConfig) -> None:
        self._jobs = jobs_collection(client, config)

    def claim(self, job_id: str, kind: str, *, lease: timedelta) -> dict[str, Any] | None:
        """Claim the right to tell the owner about a job by ``kind`` (email or webhook).

        None if that was done already or another worker holds a live claim. A claim
        whose lease ran out (its holder died mid-send) can be claimed again, so a
        crash costs at worst a late message, never a lost one.
        """
        done, lease_field = _DELIVERIES[kind]
        now = utcnow()
        with translate_errors(f"claiming the {kind} of a job"):
            return self._jobs.find_one_and_update(
                {
                    "_id": job_id,
                    done: None,
                    "$or": [
                        {lease_field: {"$exists": False}},
                        {lease_field: None},
                        {lease_field: {"$lt": now}},
                    ],
                },
                {"$set": {lease_field: now + lease}},
                return_document=pymongo.ReturnDocument.AFTER,
            )

    def delivered(self, job_id: str, kind: str) -> bool:
        """Tell whether the owner was told about the job by ``kind`` (or the job is gone)."""
        with translate_errors(f"reading the {kind} of a job"):
            job = self._jobs.find_one({"_id": job_id}, {_DELIVERIES[kind][0]: 1})
        return job is None or is_delivered(job, kind)

    def mark_webhook_queued(self, job_id: str) -> None:
        """Record that the job's webhook call was handed to its own queue."""
        with translate_errors("recording a queued webhook"):
            self._jobs.update_one(
                {"_id": job_id, "webhook_queued_at": None},
                {"$set": {"webhook_queued_at": utcnow()}},
            )

    def release(self, job_id: str, kind: str) -> None:
        """Give up a claim so a retry can take it at once."""
        with translate_errors(f"releasing the {kind} of a job"):
            self._jobs.update_one({"_id": job_id}, {"$set": {_DELIVERIES[kind][1]: None}})

    def mark_delivered(self, job_id: str, kind: str, *, outcome: str) -> None:
        """Record that the owner was told by ``kind``, or that it failed for good (``outcome``)."""
        done, lease_field = _DELIVERIES[kind]
        with translate_errors(f"recording the {kind} of a job"):
            self._jobs.update_one(
                {"_id": job_id},
                {"$set": {done: utcnow(), lease_field: None, f"{kind}_outcome": outcome}},
            )
