"""Small helpers that look at the real broker the way an operator would."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pika

from common.config import RabbitConfig
from common.messaging import Consumer, connection_parameters


def queue_depth(config: RabbitConfig, queue: str) -> int:
    """Return how many messages wait, ready, in ``queue``."""
    connection = pika.BlockingConnection(connection_parameters(config, "test-inspect"))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def get_message(config: RabbitConfig, queue: str) -> tuple[pika.BasicProperties, bytes] | None:
    """Take one message off ``queue`` (acked), or None if it is empty."""
    connection = pika.BlockingConnection(connection_parameters(config, "test-inspect"))
    try:
        method, properties, body = connection.channel().basic_get(queue, auto_ack=True)
        return None if method is None else (properties, body)
    finally:
        connection.close()


def put_raw(
    config: RabbitConfig,
    queue: str,
    body: bytes,
    *,
    message_id: str | None = None,
    headers: dict | None = None,
) -> None:
    """Put raw bytes straight on an existing queue, as a misbehaving producer would."""
    connection = pika.BlockingConnection(connection_parameters(config, "test-raw"))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        properties = pika.BasicProperties(delivery_mode=2, message_id=message_id, headers=headers)
        channel.basic_publish("", queue, body, properties, mandatory=True)
    finally:
        connection.close()


@contextmanager
def running(consumer: Consumer, timeout: float = 15.0) -> Iterator[threading.Thread]:
    """Run ``consumer`` on a thread until the block ends, then stop and join it."""
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        assert consumer.consuming.wait(timeout), "consumer never started consuming"
        yield thread
    finally:
        consumer.stop()
        thread.join(timeout)
        assert not thread.is_alive(), "consumer did not stop"


def body_of(message: tuple[pika.BasicProperties, bytes] | None) -> dict:
    """Decode the JSON body of a message taken with ``get_message``."""
    assert message is not None, "expected a message, the queue was empty"
    return json.loads(message[1])
