"""Handle one message from the mp3 queue: email the job's owner exactly once."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from common import metrics
from common.errors import PermanentError, TransientError
from common.jobs import JobStore
from common.messaging import Delivery
from notification.emails import compose
from notification.mailer import Mailer

log = logging.getLogger(__name__)

# Longer than one send can take: a claim older than this belonged to a worker
# that died mid-send, and the job's email is sent again.
CLAIM_LEASE = timedelta(minutes=2)
REQUIRED_FIELDS = ("job_id", "username", "status")


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


def handle(
    message: dict[str, Any],
    delivery: Delivery,
    *,
    jobs: JobStore,
    mailer: Mailer,
    mail_from: str,
    public_url: str,
) -> None:
    """Email the owner of the job in ``message`` unless that was already done.

    Raises:
        PermanentError: the message is malformed.
        TransientError: MongoDB or the SMTP server is unavailable; retry later.
    """
    validate(message)
    job_id = message["job_id"]
    job = jobs.get(job_id)
    if job is None:
        log.info("job %s was deleted; no email", job_id)
        return
    if job.get("notified_at") is not None:
        log.info("owner of job %s was already told (delivery attempt %d)", job_id, delivery.attempt)
        return
    if jobs.claim_notification(job_id, lease=CLAIM_LEASE) is None:
        raise TransientError(f"another worker is emailing about job {job_id}")
    email = compose(message, mail_from=mail_from, public_url=public_url)
    try:
        mailer.send(email)
    except PermanentError as exc:
        # A bad address stays bad: record the job as handled and move on.
        log.warning("mail server refused the email for job %s for good: %s", job_id, exc)
        metrics.EMAILS.labels("refused").inc()
        jobs.mark_notified(job_id)
        return
    except TransientError:
        metrics.EMAILS.labels("failed").inc()
        jobs.release_notification(job_id)
        raise
    metrics.EMAILS.labels("sent").inc()
    jobs.mark_notified(job_id)
    log.info("emailed %s about job %s (%s)", message["username"], job_id, message["status"])
