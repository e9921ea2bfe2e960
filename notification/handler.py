"""Handle one message from the mp3 queue: tell the job's owner, exactly once each way.

The owner gets one email per job and, if the upload named a ``callback_url``,
one webhook call. Each is claimed with a lease before it is attempted and
recorded after, so a redelivered message repeats neither, and a worker that
dies mid-way only delays it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from prometheus_client import Counter

from common import metrics
from common.errors import PermanentError, TransientError
from common.jobs import EMAIL, WEBHOOK, JobStore, public_view
from common.messaging import Delivery
from common.retry import retry_transient
from notification.emails import compose
from notification.mailer import Mailer
from notification.webhook import WebhookSender

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("job_id", "username", "status")
WEBHOOK_EVENT = "job.finished"
# How long to keep trying to record a delivery that already happened.
RECORD_PATIENCE_SECONDS = 60.0
# How often a delivery waiting for another worker's claim looks again.
CLAIM_POLL_SECONDS = 0.5


def validate(message: dict[str, Any]) -> None:
    """Check the fields an mp3 message must carry.

    Raises:
        PermanentError: a field is missing or has the wrong type.
    """
    for name in REQUIRED_FIELDS:
        if not isinstance(message.get(name), str) or not message[name]:
            raise PermanentError(f"mp3 message lacks a {name!r} string")
    if message["status"] not in ("done", "failed"):
        raise PermanentError(f"mp3 message has unknown status {message['status']!r}")
    if message["status"] == "done" and not message.get("mp3_fid"):
        raise PermanentError("a done mp3 message lacks its mp3_fid")


class Notifier:
    """Email owners of finished jobs and call their webhooks."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        mailer: Mailer,
        webhooks: WebhookSender,
        mail_from: str,
        public_url: str,
        claim_lease: timedelta = timedelta(minutes=2),
    ) -> None:
        self._jobs = jobs
        self._mailer = mailer
        self._webhooks = webhooks
        self._mail_from = mail_from
        self._public_url = public_url
        # Longer than one send can take: a claim older than this belonged to a worker
        # that died mid-send, and the job's email (or webhook) is sent again.
        self._claim_lease = claim_lease

    def handle(self, message: dict[str, Any], delivery: Delivery) -> None:
        """Email the owner of the job in ``message`` and call its webhook, unless done already.

        Raises:
            PermanentError: the message is malformed.
            TransientError: MongoDB, the SMTP server or the webhook receiver is unavailable.
        """
        validate(message)
        job_id = message["job_id"]
        job = self._jobs.get(job_id)
        if job is None:
            log.info("job %s was deleted; nobody to tell", job_id)
            return
        if job.get("notified_at") is None:
            self._email(message)
        else:
            log.info("owner of job %s was already emailed (attempt %d)", job_id, delivery.attempt)
        if job.get("callback_url") and job.get("webhook_done_at") is None:
            self._call_webhook(job)

    def _email(self, message: dict[str, Any]) -> None:
        job_id = message["job_id"]
        email = compose(message, mail_from=self._mail_from, public_url=self._public_url)

        def send() -> None:
            # Recorded the moment the server accepts it: a crash between the two is the
            # one way an email can go out twice, so that window is kept as small as it gets.
            self._mailer.send(
                email, on_accepted=lambda: self._remember(job_id, EMAIL, outcome="sent")
            )

        self._deliver(job_id, EMAIL, metrics.EMAILS, "sent", send)

    def _call_webhook(self, job: dict[str, Any]) -> None:
        def send() -> str:
            status = self._webhooks.send(job["callback_url"], WEBHOOK_EVENT, self._payload(job))
            return f"delivered: {status}"

        self._deliver(job["_id"], WEBHOOK, metrics.WEBHOOKS, "delivered", send)

    def _deliver(
        self,
        job_id: str,
        kind: str,
        counter: Counter,
        success: str,
        send: Callable[[], str | None],
    ) -> None:
        """Claim, send and record one way of telling the owner; ``send`` returns the outcome
        to record, or None when it recorded the delivery itself."""
        if not self._claim(job_id, kind):
            return
        try:
            outcome = send()
        except PermanentError as exc:
            # A bad address or a receiver that says no stays so: record it and move on.
            log.warning("the %s of job %s was refused for good: %s", kind, job_id, exc)
            counter.labels("refused").inc()
            self._remember(job_id, kind, outcome=f"refused: {exc}")
            return
        except TransientError:
            counter.labels("failed").inc()
            self._jobs.release(job_id, kind)
            raise
        counter.labels(success).inc()
        if outcome is not None:
            self._remember(job_id, kind, outcome=outcome)
        log.info("sent the %s of job %s", kind, job_id)

    def _claim(self, job_id: str, kind: str) -> bool:
        """Claim ``kind`` of the job; False if it was done meanwhile.

        A claim held by another worker is waited out rather than counted as a failed
        attempt: its holder is sending (and will record it) or died mid-send, and then
        its lease lapses. Counting it would spend the delivery's attempts within one
        lease and dead-letter a message that only had to wait.

        Raises:
            TransientError: the claim was still held a whole lease later.
        """
        deadline = time.monotonic() + self._claim_lease.total_seconds() + CLAIM_POLL_SECONDS
        while self._jobs.claim(job_id, kind, lease=self._claim_lease) is None:
            if self._jobs.delivered(job_id, kind):
                log.info("the %s of job %s was sent by another worker", kind, job_id)
                return False
            if time.monotonic() >= deadline:
                raise TransientError(f"another worker is sending the {kind} of job {job_id}")
            time.sleep(CLAIM_POLL_SECONDS)
        return True

    def _remember(self, job_id: str, kind: str, *, outcome: str) -> None:
        """Record that the owner was told, riding out a short MongoDB outage.

        The message already went out: failing here would retry the whole delivery
        once the claim lapses and tell the owner twice, so keep trying for a while.
        """
        retry_transient(
            lambda: self._jobs.mark_delivered(job_id, kind, outcome=outcome),
            f"MongoDB to record the {kind} of job {job_id}",
            timeout=RECORD_PATIENCE_SECONDS,
            base=0.25,
        )

    def _payload(self, job: dict[str, Any]) -> dict[str, Any]:
        body = public_view(job)
        body["event"] = WEBHOOK_EVENT
        body["download_url"] = (
            f"{self._public_url}/download?fid={body['mp3_fid']}" if body["mp3_fid"] else None
        )
        return body
