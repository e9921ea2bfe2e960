"""Webhook calls from the notification handler to a real local HTTP receiver."""

from __future__ import annotations

import json

import pytest
from bson import ObjectId

from common.config import EgressConfig
from common.egress import EgressGuard
from common.errors import TransientError
from common.jobs import JobStore, new_job_id
from common.messaging import Delivery
from common.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from notification.config import SmtpConfig
from notification.handler import Notifier
from notification.mailer import Mailer
from notification.webhook import WebhookSender
from tests.support.receiver import WebhookReceiver

SECRET = "whsec-notification-test"


@pytest.fixture
def jobs(storage):
    return JobStore(storage.client, storage.config)


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


def make_notifier(jobs, mailbox, *, allow_private=True):
    # The receiver listens on loopback, on a port of its own: the tests allow both, but
    # for the one that checks private addresses are refused.
    guard = EgressGuard(EgressConfig(allow_private=allow_private, ports=None))
    return Notifier(
        jobs=jobs,
        mailer=Mailer(SmtpConfig(host=mailbox.host, port=mailbox.port, timeout=5)),
        webhooks=WebhookSender(SECRET, guard=guard, timeout=5),
        mail_from="video2mp3@localhost",
        public_url="http://video2mp3.test",
    )


def finished(jobs, callback_url):
    owner = f"hook-{new_job_id()[:8]}@example.com"
    job = jobs.create(
        job_id=new_job_id(),
        owner=owner,
        video_fid=ObjectId(),
        filename="clip.mp4",
        size=1,
        options={},
        callback_url=callback_url,
    )
    jobs.start(job["_id"])
    mp3_fid = ObjectId()
    jobs.finish(job["_id"], mp3_fid=mp3_fid)
    return {
        "job_id": job["_id"],
        "username": owner,
        "status": "done",
        "mp3_fid": str(mp3_fid),
        "filename": "clip.mp4",
    }


def delivery(attempt=1):
    return Delivery("mp3", attempt=attempt, max_attempts=5, message_id=None)


def test_the_webhook_gets_the_signed_job(jobs, mailbox, receiver):
    message = finished(jobs, receiver.url)
    make_notifier(jobs, mailbox).handle(message, delivery())

    [call] = receiver.wait_for(1)
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["X-Video2mp3-Event"] == "job.finished"
    assert verify_signature(
        SECRET.encode(),
        signature=call.headers[SIGNATURE_HEADER],
        timestamp=call.headers[TIMESTAMP_HEADER],
        body=call.body,
    )
    payload = json.loads(call.body)
    assert payload["job_id"] == message["job_id"]
    assert payload["status"] == "done"
    assert payload["download_url"] == f"http://video2mp3.test/download?fid={message['mp3_fid']}"
    assert jobs.get(message["job_id"])["webhook_outcome"] == "delivered: 200"
    assert len(mailbox.messages(to=message["username"])) == 1


def test_a_failing_receiver_is_retried_without_a_second_email(jobs, mailbox, receiver):
    receiver.statuses = [503]
    message = finished(jobs, receiver.url)
    notifier = make_notifier(jobs, mailbox)
    with pytest.raises(TransientError, match="503"):
        notifier.handle(message, delivery())
    notifier.handle(message, delivery(attempt=2))
    notifier.handle(message, delivery(attempt=3))  # a late redelivery changes nothing

    assert len(receiver.wait_for(2)) == 2
    assert len(mailbox.messages(to=message["username"])) == 1
    assert jobs.get(message["job_id"])["webhook_outcome"] == "delivered: 200"


@pytest.mark.parametrize("status", [404, 410, 302])
def test_a_refusal_is_recorded_and_not_retried(jobs, mailbox, receiver, status):
    receiver.statuses = [status]
    receiver.redirect_to = "http://169.254.169.254/latest/meta-data"
    message = finished(jobs, receiver.url)
    make_notifier(jobs, mailbox).handle(message, delivery())  # acked: no exception
    assert len(receiver.calls) == 1  # the redirect was not followed
    assert jobs.get(message["job_id"])["webhook_outcome"].startswith("refused")


def test_private_targets_are_refused_unless_allowed(jobs, mailbox, receiver):
    message = finished(jobs, receiver.url)
    make_notifier(jobs, mailbox, allow_private=False).handle(message, delivery())
    assert receiver.calls == []
    assert "loopback, not a public address" in jobs.get(message["job_id"])["webhook_outcome"]


def test_without_a_secret_nothing_unsigned_is_sent(jobs, mailbox, receiver):
    message = finished(jobs, receiver.url)
    notifier = Notifier(
        jobs=jobs,
        mailer=Mailer(SmtpConfig(host=mailbox.host, port=mailbox.port)),
        webhooks=WebhookSender(
            None, guard=EgressGuard(EgressConfig(allow_private=True, ports=None)), timeout=5
        ),
        mail_from="video2mp3@localhost",
        public_url="http://video2mp3.test",
    )
    notifier.handle(message, delivery())
    assert receiver.calls == []
    assert "WEBHOOK_SECRET" in jobs.get(message["job_id"])["webhook_outcome"]
