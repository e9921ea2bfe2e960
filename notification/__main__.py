"""Run the notification worker: ``python -m notification``."""

from __future__ import annotations

import logging
from datetime import timedelta

from common.egress import EgressGuard
from common.jobs import JobStore
from common.logs import configure_logging
from common.messages import job_id_in, webhook_message
from common.messaging import Consumer, GiveUpHook, Publisher
from common.storage import Storage
from common.worker import run_worker
from notification.config import Config
from notification.handler import Notifier
from notification.hosts import HostGate
from notification.ledger import DeliveryLedger
from notification.mailer import Mailer
from notification.webhook import WebhookSender

log = logging.getLogger("notification")


def main() -> None:
    """Consume the mp3 and webhook queues until SIGTERM, telling each job's owner once."""
    config = Config.from_env()
    configure_logging("notification", config.logging)
    storage = Storage(config.mongo)
    publisher = Publisher(config.rabbit, name="notification")

    def enqueue_webhook(job_id: str) -> None:
        message = webhook_message(job_id)
        publisher.publish(config.webhook_queue, message.body, message_id=message.message_id)

    notifier = Notifier(
        jobs=JobStore(storage.client, config.mongo),
        ledger=DeliveryLedger(storage.client, config.mongo),
        mailer=Mailer(config.smtp),
        webhooks=WebhookSender(
            config.webhook_secret,
            guard=EgressGuard(config.egress),
            timeout=config.webhook_timeout,
        ),
        enqueue_webhook=enqueue_webhook,
        hosts=HostGate(concurrency=config.webhook_host_concurrency),
        mail_from=config.smtp.mail_from,
        public_url=config.public_url,
        claim_lease=timedelta(seconds=config.claim_lease),
    )

    def give_up(queue: str, what: str) -> GiveUpHook:
        return lambda message, error: log.error(
            "could not %s of job %s; the message is in %s.dead: %s",
            what,
            job_id_in(message),
            queue,
            error,
        )

    emails = Consumer(
        config.rabbit,
        config.mp3_queue,
        notifier.handle,
        retry=config.retry,
        name="notification",
        on_give_up=give_up(config.mp3_queue, "email the owner"),
    )
    webhooks = Consumer(
        config.rabbit,
        config.webhook_queue,
        notifier.handle_webhook,
        retry=config.retry,
        name="notification-webhooks",
        prefetch=config.webhook_concurrency,
        on_give_up=give_up(config.webhook_queue, "call the webhook"),
    )
    try:
        run_worker(
            [emails, webhooks], health_host=config.health_host, health_port=config.health_port
        )
    finally:
        publisher.close()
        storage.close()


if __name__ == "__main__":
    main()
