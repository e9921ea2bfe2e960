"""Tell a finished job's owner, exactly once each way: one email and, if asked, one webhook.

Two queues feed the notifier. A message on ``mp3`` (a job finished) hands the
job's webhook, if it has a ``callback_url``, to the ``webhook`` queue and sends
the email; a message on ``webhook`` makes the call. Apart, a receiver that is
slow or down delays no email, and ``HostGate`` keeps it from delaying other
receivers' calls. Each delivery is claimed with a lease before it is attempted
and recorded after (``notification.ledger``), so a redelivered message repeats
neither, and a worker that dies mid-way only delays it. What the owner is told,
and to which address, comes from the job's record, never from the message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import Counter

from common.errors import PermanentError, RetryLater, TransientError
from common.jobs import FINISHED, JobStore, public_view
from common.messages import read_mp3_message, read_webhook_message
from common.messaging import Delivery
from common.retry import retry_transient
from notification import metrics
from notification.config import CLAIM_LEASE_SECONDS
from notification.emails import compose
from notification.hosts import HostGate
from notification.ledger import (
    EMAIL,
    WEBHOOK,
    DeliveryLedger,
    is_delivered,
    is_webhook_queued,
)
from notification.mailer import Mailer
from notification.webhook import WebhookSender

log = logging.getLogger(__name__)

WEBHOOK_EVENT = "job.finished"
# How long to keep trying to record a delivery that already happened.
RECORD_PATIENCE_SECONDS = 60.0


class Notifier:
    """Email owners of finished jobs and call their webhooks."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        ledger: DeliveryLedger,
        mailer: Mailer,
        webhooks: WebhookSender,
        enqueue_webhook: Callable[[str], None],
        mail_from: str,
        public_url: str,
        hosts: HostGate | None = None,
        claim_lease: timedelta = timedelta(seconds=CLAIM_LEASE_SECONDS),
    ) -> None:
        self._jobs = jobs
        self._ledger = ledger
        self._mailer = mailer
        self._webhooks = webhooks
        self._enqueue_webhook = enqueue_webhook
        self._hosts = hosts or HostGate()
        self._mail_from = mail_from
        self._public_url = public_url
        self._claim_lease = claim_lease

    def handle(self, message: dict[str, Any], delivery: Delivery) -> None:
        """Handle a finished job (the ``mp3`` queue): queue its webhook and email its owner.

        Raises:
            PermanentError: the message names no job.
            TransientError: MongoDB, the broker or the SMTP server is unavailable.
        """
        job = self._finished_job(read_mp3_message(message))
        if job is None:
            return
        if (
            job.get("callback_url")
            and not is_delivered(job, WEBHOOK)
            and not is_webhook_queued(job)
        ):
            # Queued before the email is tried, so an SMTP outage holds back no webhook.
            self._enqueue_webhook(job["_id"])
            self._ledger.mark_webhook_queued(job["_id"])
        if not is_delivered(job, EMAIL):
            self._email(job)
        else:
            log.info(
                "owner of job %s was emailed already (attempt %d)", job["_id"], delivery.attempt
            )

    def handle_webhook(self, message: dict[str, Any], delivery: Delivery) -> None:
        """Call a finished job's webhook (the ``webhook`` queue), unless done already.

        Raises:
            PermanentError: the message names no job.
            RetryLater: the receiving host is busy with other calls.
            TransientError: MongoDB is unavailable, or the receiver failed or is backing off.
        """
        job = self._finished_job(read_webhook_message(message))
        if job is None or not job.get("callback_url") or is_delivered(job, WEBHOOK):
            return
        host = urlsplit(job["callback_url"]).hostname or ""
        with self._hosts.calling(host):
            self._call_webhook(job)
        log.debug("webhook of job %s handled on attempt %d", job["_id"], delivery.attempt)

    def _finished_job(self, job_id: str) -> dict[str, Any] | None:
        job = self._jobs.get(job_id)
        if job is None:
            log.info("job %s was deleted; nobody to tell", job_id)
            return None
        if job["status"] not in FINISHED:
            raise TransientError(f"job {job_id} is {job['status']}, not finished yet")
        return job

    def _email(self, job: dict[str, Any]) -> None:
        job_id = job["_id"]
        email = compose(job, mail_from=self._mail_from, public_url=self._public_url)

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
            self._ledger.release(job_id, kind)
            raise
        counter.labels(success).inc()
        if outcome is not None:
            self._remember(job_id, kind, outcome=outcome)
        log.info("sent the %s of job %s", kind, job_id)

    def _claim(self, job_id: str, kind: str) -> bool:
        """Claim ``kind`` of the job; False if it was done meanwhile.

        Raises:
            RetryLater: another worker holds the claim. Its holder is sending (and will
                record it) or died mid-send, and then its lease lapses; either way the
                delivery waits a lease in the broker without spending an attempt.
        """
        if self._ledger.claim(job_id, kind, lease=self._claim_lease) is not None:
            return True
        if self._ledger.delivered(job_id, kind):
            log.info("the %s of job %s was sent by another worker", kind, job_id)
            return False
        raise RetryLater(
            f"another worker is sending the {kind} of job {job_id}",
            delay=self._claim_lease.total_seconds(),
        )

    def _remember(self, job_id: str, kind: str, *, outcome: str) -> None:
        """Record that the owner was told, riding out a short MongoDB outage.

        The message already went out: failing here would retry the whole delivery
        once the claim lapses and tell the owner twice, so keep trying for a while.
        """
        retry_transient(
            lambda: self._ledger.mark_delivered(job_id, kind, outcome=outcome),
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
