"""Run the notification worker: ``python -m notification``."""

from __future__ import annotations

import logging
from datetime import timedelta

from common.egress import EgressGuard
from common.jobs import JobStore
from common.logs import configure_logging
from common.messaging import Consumer
from common.storage import Storage
from common.worker import run_worker
from notification.config import Config
from notification.handler import Notifier
from notification.mailer import Mailer
from notification.webhook import WebhookSender

log = logging.getLogger("notification")


def main() -> None:
    """Consume the mp3 queue until SIGTERM, emailing each job's owner once."""
    config = Config.from_env()
    configure_logging("notification", config.logging)
    storage = Storage(config.mongo)
    notifier = Notifier(
        jobs=JobStore(storage.client, config.mongo),
        mailer=Mailer(config.smtp),
        webhooks=WebhookSender(
            config.webhook_secret,
            guard=EgressGuard(config.egress),
            timeout=config.webhook_timeout,
        ),
        mail_from=config.smtp.mail_from,
        public_url=config.public_url,
        claim_lease=timedelta(seconds=config.claim_lease),
    )
    consumer = Consumer(
        config.rabbit,
        config.mp3_queue,
        notifier.handle,
        name="notification",
        max_attempts=config.max_attempts,
        on_give_up=lambda message, error: log.error(
            "could not tell the owner of job %s; the message is in %s.dead: %s",
            (message or {}).get("job_id"),
            config.mp3_queue,
            error,
        ),
    )
    try:
        run_worker(consumer, health_host=config.health_host, health_port=config.health_port)
    finally:
        storage.close()


if __name__ == "__main__":
    main()
