"""The notification handler against real MongoDB and a real SMTP sink."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from bson import ObjectId

from common.config import EgressConfig
from common.egress import EgressGuard
from common.errors import PermanentError, RetryLater, TransientError
from common.jobs import new_job_id
from common.messaging import Delivery
from devstack import servers
from notification.config import SmtpConfig
from notification.emails import compose
from notification.handler import Notifier
from notification.ledger import EMAIL
from notification.mailer import Mailer
from notification.webhook import WebhookSender

PUBLIC_URL = "http://video2mp3.test"


@pytest.fixture
def mailer(mailbox):
    return Mailer(SmtpConfig(host=mailbox.host, port=mailbox.port, timeout=5))


def delivery(attempt: int = 1) -> Delivery:
    return Delivery("mp3", attempt=attempt, max_attempts=5, message_id=None)


def finished_job(jobs, *, status="done", owner=None):
    owner = owner or f"ann-{new_job_id()[:8]}@example.com"
    job = jobs.create(
        job_id=new_job_id(),
        owner=owner,
        video_fid=ObjectId(),
        filename="Holiday clip.mp4",
        size=10,
        options={},
    )
    jobs.start(job["_id"])
    mp3_fid = ObjectId()
    if status == "done":
        jobs.finish(job["_id"], mp3_fid=mp3_fid)
    else:
        jobs.fail(job["_id"], error="the video has no audio track")
    return {
        "job_id": job["_id"],
        "video_fid": str(job["video_fid"]),
        "mp3_fid": str(mp3_fid) if status == "done" else None,
        "username": owner,
        "filename": "Holiday clip.mp4",
        "options": {},
        "status": status,
        "error": None if status == "done" else "the video has no audio track",
    }


def notifier(jobs, ledger, mailer, webhooks=None, **settings):
    return Notifier(
        jobs=jobs,
        ledger=ledger,
        mailer=mailer,
        webhooks=webhooks or WebhookSender(None, guard=EgressGuard(EgressConfig()), timeout=5),
        enqueue_webhook=lambda job_id: pytest.fail("no job here has a callback_url"),
        mail_from="video2mp3@localhost",
        public_url=PUBLIC_URL,
        **settings,
    )


def run(message, jobs, ledger, mailer, attempt=1):
    notifier(jobs, ledger, mailer).handle(message, delivery(attempt))


def test_a_done_job_sends_one_email_with_the_fid_and_link(jobs, ledger, mailer, mailbox):
    message = finished_job(jobs)
    run(message, jobs, ledger, mailer)

    [email] = mailbox.wait_for(1, to=message["username"], timeout=5)
    assert email["Subject"] == "Your MP3 is ready: Holiday clip.mp4"
    text = email.get_body(("plain",)).get_content()
    html = email.get_body(("html",)).get_content()
    assert f"fid: {message['mp3_fid']}" in text
    assert f"{PUBLIC_URL}/download?fid={message['mp3_fid']}" in text
    assert message["mp3_fid"] in html
    assert jobs.get(message["job_id"])["notified_at"] is not None


def test_a_failed_job_sends_the_reason(jobs, ledger, mailer, mailbox):
    message = finished_job(jobs, status="failed")
    run(message, jobs, ledger, mailer)
    [email] = mailbox.wait_for(1, to=message["username"], timeout=5)
    assert email["Subject"] == "We could not convert Holiday clip.mp4"
    assert "Reason: the video has no audio track" in email.get_body(("plain",)).get_content()


def test_a_redelivered_message_sends_no_second_email(jobs, ledger, mailer, mailbox):
    message = finished_job(jobs)
    run(message, jobs, ledger, mailer)
    run(message, jobs, ledger, mailer, attempt=2)
    mailbox.wait_for(1, to=message["username"], timeout=5)
    assert len(mailbox.messages(to=message["username"])) == 1


def test_a_deleted_job_sends_nothing(jobs, ledger, mailer, mailbox):
    message = finished_job(jobs)
    jobs.delete(message["job_id"])
    run(message, jobs, ledger, mailer)
    assert mailbox.messages(to=message["username"]) == []


def test_smtp_down_is_transient_and_frees_the_claim(jobs, ledger, mailbox):
    message = finished_job(jobs)
    down = Mailer(SmtpConfig(host="127.0.0.1", port=servers.free_port(), timeout=2))
    with pytest.raises(TransientError, match="SMTP server unavailable"):
        run(message, jobs, ledger, down)
    assert jobs.get(message["job_id"])["notified_at"] is None
    # the retry (SMTP back) may claim at once and sends exactly one email
    run(message, jobs, ledger, Mailer(SmtpConfig(host=mailbox.host, port=mailbox.port)), attempt=2)
    assert len(mailbox.wait_for(1, to=message["username"], timeout=5)) == 1


# The claim lease is scaled from the shipped 120 s (NOTIFY_CLAIM_LEASE_SECONDS) to 1 s, so a
# test waits it out in seconds; the attempts are not touched.
SCALED_LEASE = timedelta(seconds=1)


def test_a_held_claim_defers_the_delivery_for_a_lease_without_sending(
    jobs, ledger, mailer, mailbox
):
    message = finished_job(jobs)
    ledger.claim(message["job_id"], EMAIL, lease=SCALED_LEASE * 5)  # another worker is sending

    with pytest.raises(RetryLater, match="another worker") as deferred:
        notifier(jobs, ledger, mailer, claim_lease=SCALED_LEASE).handle(message, delivery())

    # A deferral, not a failure: the consumer spends no attempt on it (tests/common/
    # test_messaging.py) and tries again a lease later.
    assert deferred.value.delay == SCALED_LEASE.total_seconds()
    assert mailbox.messages(to=message["username"]) == []


def test_a_claim_left_by_a_dead_worker_is_sent_once_its_lease_lapses(jobs, ledger, mailer, mailbox):
    message = finished_job(jobs)
    ledger.claim(message["job_id"], EMAIL, lease=SCALED_LEASE)  # its holder died mid-send
    with pytest.raises(RetryLater):
        notifier(jobs, ledger, mailer, claim_lease=SCALED_LEASE).handle(message, delivery())

    time.sleep(SCALED_LEASE.total_seconds() + 0.1)  # the retry comes a lease later
    notifier(jobs, ledger, mailer, claim_lease=SCALED_LEASE).handle(message, delivery())

    assert len(mailbox.wait_for(1, to=message["username"], timeout=5)) == 1
    assert jobs.get(message["job_id"])["notified_at"] is not None


def test_a_claim_whose_holder_finished_is_not_sent_again(jobs, ledger, mailer, mailbox):
    message = finished_job(jobs)
    ledger.claim(message["job_id"], EMAIL, lease=SCALED_LEASE * 5)
    ledger.mark_delivered(message["job_id"], EMAIL, outcome="sent")

    notifier(jobs, ledger, mailer, claim_lease=SCALED_LEASE * 5).handle(message, delivery())

    assert mailbox.messages(to=message["username"]) == []


def test_the_email_goes_to_the_jobs_owner_not_to_whom_the_message_names(
    jobs, ledger, mailer, mailbox
):
    message = finished_job(jobs)
    forged = {**message, "username": "attacker@example.com", "mp3_fid": "forged"}
    run(forged, jobs, ledger, mailer)
    [email] = mailbox.wait_for(1, to=message["username"], timeout=5)
    assert mailbox.messages(to="attacker@example.com") == []
    assert "forged" not in email.get_body(("plain",)).get_content()


def test_a_job_not_finished_yet_is_retried_later(jobs, ledger, mailer, mailbox):
    job = jobs.create(
        job_id=new_job_id(),
        owner="early@example.com",
        video_fid=ObjectId(),
        filename="a.mp4",
        size=1,
        options={},
    )
    with pytest.raises(TransientError, match="not finished"):
        run({"job_id": job["_id"]}, jobs, ledger, mailer)
    assert mailbox.messages(to="early@example.com") == []


def test_a_message_naming_no_job_is_permanent(jobs, ledger, mailer):
    # Which messages name no job is the contract's (tests/common/test_messages.py).
    with pytest.raises(PermanentError, match="job_id"):
        run({"job_id": 5, "username": "a@b.c", "status": "done"}, jobs, ledger, mailer)


class RejectingSink:
    """An SMTP server that refuses one recipient for good and asks others to wait."""

    def __init__(self) -> None:
        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, options):
                if address.startswith("nobody@"):
                    return "550 5.1.1 No such user"
                if address.startswith("later@"):
                    return "451 4.3.0 Try again later"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                return "250 OK"

        self.port = servers.free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)


@pytest.fixture
def rejecting_smtp():
    sink = RejectingSink()
    sink.controller.start()
    yield Mailer(SmtpConfig(host="127.0.0.1", port=sink.port, timeout=5))
    sink.controller.stop()


def test_a_permanently_refused_address_is_recorded_and_not_retried(jobs, ledger, rejecting_smtp):
    message = finished_job(jobs, owner="nobody@example.com")
    run(message, jobs, ledger, rejecting_smtp)  # no exception: the message is acked
    assert jobs.get(message["job_id"])["notified_at"] is not None


def test_a_temporary_refusal_is_transient(jobs, ledger, rejecting_smtp):
    message = finished_job(jobs, owner="later@example.com")
    with pytest.raises(TransientError):
        run(message, jobs, ledger, rejecting_smtp)
    assert jobs.get(message["job_id"])["notified_at"] is None


def test_compose_keeps_headers_on_one_line():
    email = compose(
        {
            "_id": "j1",
            "owner": "a@example.com",
            "status": "done",
            "mp3_fid": "abc",
            "filename": "evil\r\nBcc: victim@example.com.mp4",
        },
        mail_from="video2mp3@localhost",
        public_url=PUBLIC_URL,
    )
    assert "\n" not in email["Subject"]
    assert email["Bcc"] is None
    assert email["Message-ID"] == "<j1.job@localhost>"  # the same for every copy of it


def test_starttls_against_a_plain_server_is_transient(mailbox):
    mailer = Mailer(SmtpConfig(host=mailbox.host, port=mailbox.port, security="starttls"))
    email = compose(
        {"_id": "j", "owner": "a@example.com", "status": "failed"},
        mail_from="video2mp3@localhost",
        public_url=PUBLIC_URL,
    )
    # the sink offers no STARTTLS, so no mail may go out in the clear
    with pytest.raises(TransientError, match="STARTTLS"):
        mailer.send(email)
    assert mailbox.messages(to="a@example.com") == []


@pytest.fixture
def smtp_with_login():
    """An SMTP server that demands a login (over plain SMTP, as a local relay may)."""
    received = []

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login, auth_data.password) == (b"mailer", b"s3cret-pass")
        # handled=False: let aiosmtpd answer 535 itself when the check fails.
        return AuthResult(success=ok, handled=False)

    class Keep:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    port = servers.free_port()
    controller = Controller(
        Keep(),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=False,
        # smtplib would fall back from PLAIN to LOGIN, whose failure aiosmtpd answers slowly.
        auth_exclude_mechanism=["LOGIN"],
    )
    controller.start()
    yield port, received
    controller.stop()


def test_smtp_login_is_used_when_configured(jobs, ledger, smtp_with_login):
    port, received = smtp_with_login
    message = finished_job(jobs)
    good = Mailer(SmtpConfig(host="127.0.0.1", port=port, user="mailer", password="s3cret-pass"))
    run(message, jobs, ledger, good)
    assert len(received) == 1
    assert received[0].rcpt_tos == [message["username"]]


def test_a_rejected_smtp_login_is_transient(jobs, ledger, smtp_with_login):
    port, received = smtp_with_login
    message = finished_job(jobs)
    bad = Mailer(SmtpConfig(host="127.0.0.1", port=port, user="mailer", password="wrong-pass"))
    with pytest.raises(TransientError, match="SMTP login failed"):
        run(message, jobs, ledger, bad)
    assert received == []
    assert jobs.get(message["job_id"])["notified_at"] is None


def test_a_store_hiccup_after_sending_does_not_send_twice(
    jobs, ledger, mailer, mailbox, monkeypatch
):
    message = finished_job(jobs)
    real_mark = ledger.mark_delivered
    failures = []

    def flaky_mark(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise TransientError("MongoDB unavailable while recording")
        return real_mark(*args, **kwargs)

    monkeypatch.setattr(ledger, "mark_delivered", flaky_mark)
    run(message, jobs, ledger, mailer)  # rides out the hiccup instead of failing the delivery
    run(message, jobs, ledger, mailer, attempt=2)
    assert failures == [1]
    assert len(mailbox.wait_for(1, to=message["username"], timeout=5)) == 1
    assert jobs.get(message["job_id"])["notified_at"] is not None
