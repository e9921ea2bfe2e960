"""Webhook calls from the notification handler to a real local HTTP receiver.

A finished job's message on the mp3 queue hands its webhook to the webhook queue
(``enqueue_webhook``, recorded here as a list) and the webhook consumer's handler
(``handle_webhook``) makes the call.
"""

from __future__ import annotations

import json

import pytest
from bson import ObjectId

from common.config import EgressConfig
from common.egress import EgressGuard
from common.errors import RetryLater, TransientError
from common.jobs import new_job_id
from common.messaging import Delivery
from common.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from devstack import servers
from notification.config import SmtpConfig
from notification.handler import Notifier
from notification.hosts import HostGate
from notification.mailer import Mailer
from notification.webhook import WebhookSender
from tests.support.receiver import WebhookReceiver

SECRET = "whsec-notification-test"


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def queued():
    """The webhook queue, as the notifier hands it job ids."""
    return []


def make_notifier(
    jobs, ledger, mailbox, queued=None, *, allow_private=True, secret=SECRET, hosts=None
):
    # The receiver listens on loopback, on a port of its own: the tests allow both, but
    # for the one that checks private addresses are refused.
    guard = EgressGuard(EgressConfig(allow_private=allow_private, ports=None))
    return Notifier(
        jobs=jobs,
        ledger=ledger,
        mailer=Mailer(SmtpConfig(host=mailbox.host, port=mailbox.port, timeout=5)),
        webhooks=WebhookSender(secret, guard=guard, timeout=5),
        enqueue_webhook=(queued if queued is not None else []).append,
        hosts=hosts,
        mail_from="video2mp3@localhost",
        public_url="http://video2mp3.test",
    )


def call(notifier, message, attempt=1):
    notifier.handle_webhook({"job_id": message["job_id"]}, delivery(attempt))


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
    return Delivery("webhook", attempt=attempt, max_attempts=31, message_id=None)


def test_a_finished_job_hands_its_webhook_to_the_queue_once(
    jobs, ledger, mailbox, receiver, queued
):
    message = finished(jobs, receiver.url)
    notifier = make_notifier(jobs, ledger, mailbox, queued)
    notifier.handle(message, delivery())
    notifier.handle(message, delivery(attempt=2))  # a redelivery queues nothing more

    assert queued == [message["job_id"]]
    assert receiver.calls == []  # the call is the webhook consumer's, not the email's
    assert len(mailbox.wait_for(1, to=message["username"], timeout=5)) == 1


def test_an_smtp_outage_holds_back_no_webhook(jobs, ledger, receiver, queued):
    message = finished(jobs, receiver.url)
    down = Notifier(
        jobs=jobs,
        ledger=ledger,
        mailer=Mailer(SmtpConfig(host="127.0.0.1", port=servers.free_port(), timeout=2)),
        webhooks=WebhookSender(SECRET, guard=EgressGuard(EgressConfig()), timeout=5),
        enqueue_webhook=queued.append,
        mail_from="video2mp3@localhost",
        public_url="http://video2mp3.test",
    )
    with pytest.raises(TransientError, match="SMTP"):
        down.handle(message, delivery())
    assert queued == [message["job_id"]]


def test_the_webhook_gets_the_signed_job(jobs, ledger, mailbox, receiver):
    message = finished(jobs, receiver.url)
    call(make_notifier(jobs, ledger, mailbox), message)

    [call_] = receiver.wait_for(1)
    assert call_.headers["Content-Type"] == "application/json"
    assert call_.headers["X-Video2mp3-Event"] == "job.finished"
    assert verify_signature(
        SECRET.encode(),
        signature=call_.headers[SIGNATURE_HEADER],
        timestamp=call_.headers[TIMESTAMP_HEADER],
        body=call_.body,
    )
    payload = json.loads(call_.body)
    assert payload["job_id"] == message["job_id"]
    assert payload["status"] == "done"
    assert payload["download_url"] == f"http://video2mp3.test/download?fid={message['mp3_fid']}"
    assert jobs.get(message["job_id"])["webhook_outcome"] == "delivered: 200"
    assert mailbox.messages(to=message["username"]) == []  # the email is the mp3 queue's


def test_a_failing_receiver_is_retried_after_its_host_backs_off(jobs, ledger, mailbox, receiver):
    receiver.statuses = [503]
    message = finished(jobs, receiver.url)
    clock = [0.0]
    notifier = make_notifier(jobs, ledger, mailbox, hosts=HostGate(clock=lambda: clock[0]))
    with pytest.raises(TransientError, match="503"):
        call(notifier, message)
    with pytest.raises(TransientError, match="not calling it"):
        call(notifier, message, attempt=2)  # the host backs off: no second call yet
    assert len(receiver.calls) == 1
    clock[0] += 5.0  # the first back-off (5 s) has passed
    call(notifier, message, attempt=3)
    call(notifier, message, attempt=4)  # a late redelivery changes nothing

    assert len(receiver.wait_for(2)) == 2
    assert jobs.get(message["job_id"])["webhook_outcome"] == "delivered: 200"


def test_a_busy_host_defers_without_calling(jobs, ledger, mailbox, receiver):
    message = finished(jobs, receiver.url)
    hosts = HostGate(concurrency=1)
    notifier = make_notifier(jobs, ledger, mailbox, hosts=hosts)
    # Another worker's call to the same receiver is in flight.
    with hosts.calling("127.0.0.1"), pytest.raises(RetryLater, match="in flight"):
        call(notifier, message)
    assert receiver.calls == []
    call(notifier, message)
    assert len(receiver.wait_for(1)) == 1


@pytest.mark.parametrize("status", [404, 410, 302])
def test_a_refusal_is_recorded_and_not_retried(jobs, ledger, mailbox, receiver, status):
    receiver.statuses = [status]
    receiver.redirect_to = "http://169.254.169.254/latest/meta-data"
    message = finished(jobs, receiver.url)
    call(make_notifier(jobs, ledger, mailbox), message)  # acked: no exception
    assert len(receiver.calls) == 1  # the redirect was not followed
    assert jobs.get(message["job_id"])["webhook_outcome"].startswith("refused")


def test_private_targets_are_refused_unless_allowed(jobs, ledger, mailbox, receiver):
    message = finished(jobs, receiver.url)
    call(make_notifier(jobs, ledger, mailbox, allow_private=False), message)
    assert receiver.calls == []
    assert "loopback, not a public address" in jobs.get(message["job_id"])["webhook_outcome"]


def test_without_a_secret_nothing_unsigned_is_sent(jobs, ledger, mailbox, receiver):
    message = finished(jobs, receiver.url)
    call(make_notifier(jobs, ledger, mailbox, secret=None), message)
    assert receiver.calls == []
    assert "WEBHOOK_SECRET" in jobs.get(message["job_id"])["webhook_outcome"]
