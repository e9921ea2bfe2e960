"""The delivery ledger on the job records, against a real MongoDB server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bson import ObjectId

from common.jobs import new_job_id
from notification.ledger import EMAIL, WEBHOOK, is_delivered, is_webhook_queued


@pytest.fixture
def job(jobs):
    """Record a job whose owner asked for an email and a webhook."""
    callback_url = "https://hooks.example.com/done"
    fields = {"owner": "a@example.com", "filename": "clip.mp4", "size": 1, "options": {}}
    return jobs.create(
        job_id=new_job_id(), video_fid=ObjectId(), callback_url=callback_url, **fields
    )


def test_notification_claims_are_exclusive_and_expire(ledger, job):
    assert ledger.claim(job["_id"], EMAIL, lease=timedelta(minutes=5)) is not None
    assert ledger.claim(job["_id"], EMAIL, lease=timedelta(minutes=5)) is None
    ledger.release(job["_id"], EMAIL)
    assert ledger.claim(job["_id"], EMAIL, lease=timedelta(seconds=-1)) is not None
    # the holder "died": its lease is already over, so another worker may claim
    assert ledger.claim(job["_id"], EMAIL, lease=timedelta(minutes=5)) is not None
    ledger.mark_delivered(job["_id"], EMAIL, outcome="sent")
    assert ledger.claim(job["_id"], EMAIL, lease=timedelta(minutes=5)) is None


def test_the_email_and_the_webhook_are_claimed_and_recorded_apart(ledger, jobs, job):
    assert ledger.claim(job["_id"], EMAIL, lease=timedelta(minutes=5)) is not None
    assert ledger.claim(job["_id"], WEBHOOK, lease=timedelta(minutes=5)) is not None
    ledger.mark_delivered(job["_id"], WEBHOOK, outcome="delivered: 200")

    assert ledger.delivered(job["_id"], WEBHOOK)
    assert not ledger.delivered(job["_id"], EMAIL)
    record = jobs.get(job["_id"])
    assert is_delivered(record, WEBHOOK)
    assert not is_delivered(record, EMAIL)
    # The fields earlier versions wrote, so records they left are read the same.
    assert record["webhook_done_at"] is not None
    assert record["webhook_outcome"] == "delivered: 200"
    assert record["webhook_lease_until"] is None
    assert record["notify_lease_until"] is not None
    assert record["notified_at"] is None


def test_a_deleted_job_counts_as_delivered(ledger, jobs, job):
    jobs.delete(job["_id"])
    assert ledger.delivered(job["_id"], EMAIL)  # nobody is left to tell


def test_a_queued_webhook_is_recorded_once(ledger, jobs, job):
    assert not is_webhook_queued(jobs.get(job["_id"]))
    ledger.mark_webhook_queued(job["_id"])
    first = jobs.get(job["_id"])["webhook_queued_at"]
    ledger.mark_webhook_queued(job["_id"])
    assert is_webhook_queued(jobs.get(job["_id"]))
    assert jobs.get(job["_id"])["webhook_queued_at"] == first
