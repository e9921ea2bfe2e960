"""Make real dead letters: publish to a work queue, then reject without requeue."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pika

from common.config import RabbitConfig
from common.messaging import ATTEMPT_HEADER, connection_parameters, dead_letter_queue, declare_queue
from tests.support.polling import wait_until
from tests.support.rabbit import queue_depth

PUBLISHED_AT = 1_700_000_000  # a timestamp a replay must keep
APP_ID = "test-producer"


def job_message(number: int) -> tuple[str, dict[str, Any]]:
    """Return a message id and a work message body for job number ``number``."""
    job_id = f"{number:032x}"
    return job_id, {"job_id": job_id, "video_fid": f"{number:024x}", "username": "a@b.test"}


def dead_letter(
    config: RabbitConfig,
    queue: str,
    messages: Iterable[tuple[str | None, bytes | Mapping[str, Any]]],
    *,
    attempt: int | None = 3,
) -> int:
    """Publish ``(message id, body)`` pairs to ``queue`` and reject each for good.

    The broker moves them to ``<queue>.dead`` with its x-death header, as it does when
    a consumer gives up. Returns how many were dead-lettered, once all have arrived.
    """
    connection = pika.BlockingConnection(connection_parameters(config, "test-dead-letter"))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        declare_queue(channel, queue, delivery_limit=config.delivery_limit)
        already = channel.queue_declare(dead_letter_queue(queue), passive=True)
        before = already.method.message_count
        count = 0
        for message_id, body in messages:
            headers: dict[str, Any] = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}
            if attempt is not None:
                headers[ATTEMPT_HEADER] = attempt
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            properties = pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=message_id,
                timestamp=PUBLISHED_AT,
                app_id=APP_ID,
                headers=headers,
            )
            channel.basic_publish("", queue, raw, properties, mandatory=True)
            method, _, _ = channel.basic_get(queue, auto_ack=False)
            assert method is not None
            channel.basic_nack(method.delivery_tag, requeue=False)
            count += 1
    finally:
        connection.close()
    wait_until(lambda: queue_depth(config, dead_letter_queue(queue)) == before + count)
    return count


def take_all(
    config: RabbitConfig, queue: str, count: int
) -> list[tuple[pika.BasicProperties, bytes]]:
    """Wait until ``count`` messages are ready in ``queue``, then take them all (acked), in order.

    Messages handed back a moment ago may still be on their way to the queue.
    """
    wait_until(
        lambda: queue_depth(config, queue) == count,
        describe=lambda: f"{queue_depth(config, queue)} messages in {queue}",
    )
    connection = pika.BlockingConnection(connection_parameters(config, "test-take"))
    taken = []
    try:
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((properties, body))
    finally:
        connection.close()
