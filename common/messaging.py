"""RabbitMQ: queue topology, a confirmed publisher and a heartbeat-safe consumer.

This module is the only place that talks to the broker. Both classes keep
pika's ``BlockingConnection`` on one thread each, as pika requires:

* ``Publisher`` keeps one connection per calling thread (gunicorn threads,
  consumer workers), publishes persistent JSON with publisher confirms and
  reconnects with a bounded retry, raising ``TransientError`` when it gives up.
* ``Consumer`` owns connect, prefetch, acks, retries, reconnects and SIGTERM;
  the handler it calls is a plain function run on a worker thread, so a long
  conversion never starves pika's I/O loop of heartbeats. Acks are handed back
  to the I/O thread with ``add_callback_threadsafe``.

Every work queue is a durable quorum queue dead-lettering into
``<queue>.dead``; the broker's delivery limit catches a message that crashes
its consumer again and again.

Retries wait in the broker, not in a sleeping worker. A message whose handling
failed for a passing reason is published again, with its attempt number in the
``video2mp3-attempt`` header, to a delay queue ``<queue>.retry.<N>ms``: a quorum
queue whose messages expire after N ms and are dead-lettered back to ``<queue>``
(at least once), and only then acked. The delays come from the queue's
``RetryLadder``; its last attempt dead-letters the message into ``<queue>.dead``.
The header, not ``x-delivery-count``, counts attempts: RabbitMQ 4 no longer raises
that on a requeue, and a republished message starts it afresh anyway.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from common import metrics
from common.config import RabbitConfig, redact_url
from common.errors import PermanentError, RetryLater, TransientError
from common.logs import log_context
from common.messages import job_id_in
from common.retry import RetryLadder, backoff_delay

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
QUEUE_DEPTH_INTERVAL = 5.0  # seconds between a consumer's looks at its queue's depth
# The header that carries a message's attempt number (absent: the first attempt).
ATTEMPT_HEADER = "video2mp3-attempt"
# A handler's unexpected exception (a bug, not an outage) is retried only this often:
# the ladder's day of retries is for dependencies coming back, not for code to change.
UNEXPECTED_ERROR_ATTEMPTS = 5
# How long a failed message waits in the worker when its retry cannot be published
# (the broker is failing too); it is then requeued the old way.
REPUBLISH_FALLBACK_SECONDS = 5.0
_RETRY_QUEUE = re.compile(r"^(?P<target>.+)\.retry\.(?P<ms>[0-9]+)ms$")
# pika raises these (and OSError from the socket) when the broker or the path
# to it fails; everything else escaping pika is a programming error.
BROKER_ERRORS = (pika.exceptions.AMQPError, OSError)


def dead_letter_queue(queue: str) -> str:
    """Return the name of the queue that holds ``queue``'s dead letters."""
    return f"{queue}.dead"


def retry_queue(queue: str, delay: float) -> str:
    """Return the name of the queue where ``queue``'s messages wait ``delay`` seconds."""
    return f"{queue}.retry.{max(1, round(delay * 1000))}ms"


def queue_family(queue: str, ladder: RetryLadder | None = None) -> list[str]:
    """Return ``queue``, its dead-letter queue and the delay queues of ``ladder``."""
    delays = sorted(set(ladder.delays)) if ladder else []
    return [queue, dead_letter_queue(queue), *(retry_queue(queue, delay) for delay in delays)]


def declare(channel: BlockingChannel, queue: str, *, delivery_limit: int) -> None:
    """Declare a work queue (with its dead-letter queue) or, by its name, a delay queue."""
    match = _RETRY_QUEUE.match(queue)
    if match is None:
        declare_queue(channel, queue, delivery_limit=delivery_limit)
        return
    channel.queue_declare(
        queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-message-ttl": int(match["ms"]),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": match["target"],
            # At-least-once dead-lettering (RabbitMQ 3.10+) keeps the message until the
            # work queue confirms it; it requires reject-publish overflow.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )


def declare_queue(channel: BlockingChannel, queue: str, *, delivery_limit: int) -> None:
    """Declare ``queue`` and its dead-letter queue as durable quorum queues."""
    channel.queue_declare(
        dead_letter_queue(queue), durable=True, arguments={"x-queue-type": "quorum"}
    )
    channel.queue_declare(
        queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead_letter_queue(queue),
            "x-delivery-limit": delivery_limit,
        },
    )


def connection_parameters(config: RabbitConfig, name: str) -> pika.URLParameters:
    """Build pika parameters with bounded timeouts and a connection name the broker shows."""
    params = pika.URLParameters(config.url)
    params.heartbeat = config.heartbeat
    params.blocked_connection_timeout = 30
    params.socket_timeout = 5
    params.stack_timeout = 10
    params.connection_attempts = 1  # our callers retry with their own backoff
    params.client_properties = {"connection_name": name}
    return params


class Publisher:
    """Publish JSON messages with confirms over one connection per thread."""

    def __init__(
        self,
        config: RabbitConfig,
        *,
        name: str = "publisher",
        attempts: int = 3,
        retry_base: float = 0.2,
    ) -> None:
        self._config = config
        self._name = name
        self._attempts = attempts
        self._retry_base = retry_base
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[pika.BlockingConnection] = set()

    def publish(
        self, queue: str, message: Mapping[str, Any], *, message_id: str | None = None
    ) -> None:
        """Publish ``message`` persistently to ``queue`` and wait for the broker's confirm.

        Raises:
            TransientError: the broker did not confirm after the bounded retries.
        """
        body = json.dumps(message, separators=(",", ":")).encode()
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id or uuid.uuid4().hex,
            timestamp=int(time.time()),
            app_id=self._name,
        )
        self.publish_raw(queue, body, properties)

    def publish_raw(self, queue: str, body: bytes, properties: pika.BasicProperties) -> None:
        """Publish ``body`` with ``properties`` as they are and wait for the confirm.

        Raises:
            TransientError: the broker did not confirm after the bounded retries.
        """
        last_error: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                channel = self._channel_for(queue)
                channel.basic_publish("", queue, body, properties, mandatory=True)
                return
            except BROKER_ERRORS as exc:
                last_error = exc
                log.warning(
                    "publish to %s failed (attempt %d/%d): %r", queue, attempt, self._attempts, exc
                )
                self._drop_connection()
                if attempt < self._attempts:
                    time.sleep(backoff_delay(attempt, base=self._retry_base, cap=2.0))
        metrics.PUBLISH_FAILURES.labels(queue).inc()
        raise TransientError(f"could not publish to queue {queue!r}: {last_error!r}")

    def check(self) -> None:
        """Check that the broker answers over this thread's connection.

        Raises:
            TransientError: it does not.
        """
        for attempt in (1, 2):
            try:
                self._channel().connection.process_data_events(time_limit=0)
                return
            except BROKER_ERRORS as exc:
                # This thread's connection may be a stale one from before an outage;
                # only a fresh connection failing too says the broker is down.
                self._drop_connection()
                if attempt == 2:
                    raise TransientError(f"RabbitMQ unavailable: {exc!r}") from exc

    def close(self) -> None:
        """Close every connection this publisher opened, on any thread."""
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(*BROKER_ERRORS):
                connection.close()
        self._local.__dict__.clear()

    def _channel_for(self, queue: str) -> BlockingChannel:
        channel = self._channel()
        declared = self._local.declared
        if queue not in declared:
            declare(channel, queue, delivery_limit=self._config.delivery_limit)
            declared.add(queue)
        return channel

    def _channel(self) -> BlockingChannel:
        local = self._local
        connection = getattr(local, "connection", None)
        if connection is None or connection.is_closed:
            connection = pika.BlockingConnection(connection_parameters(self._config, self._name))
            with self._lock:
                self._connections.add(connection)
            local.connection = connection
            local.channel = connection.channel()
            local.channel.confirm_delivery()
            local.declared = set()
        return local.channel

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.__dict__.clear()
        if connection is None:
            return
        with self._lock:
            self._connections.discard(connection)
        with contextlib.suppress(*BROKER_ERRORS):
            if connection.is_open:
                connection.close()


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the handler may want to know about the delivery it is handling."""

    queue: str
    attempt: int
    max_attempts: int
    message_id: str | None


Handler = Callable[[dict[str, Any], Delivery], None]
GiveUpHook = Callable[[dict[str, Any] | None, Exception], None]


class _Outcome(enum.Enum):
    ACK = "ack"
    RETRY = "retry"  # published again to a delay queue, then acked
    REQUEUE = "requeue"
    DEAD_LETTER = "dead-letter"


def decode_message(body: bytes, *, max_bytes: int) -> dict[str, Any]:
    """Decode a message body into a JSON object.

    Raises:
        PermanentError: the body is too large, not UTF-8 JSON, or not an object.
    """
    if len(body) > max_bytes:
        raise PermanentError(f"message of {len(body)} bytes exceeds the {max_bytes}-byte limit")
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PermanentError(f"message is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise PermanentError(f"message must be a JSON object, got {type(message).__name__}")
    return message


class Consumer:
    """Consume one queue: prefetch, manual acks, retries in the broker, reconnects, clean stop."""

    def __init__(
        self,
        config: RabbitConfig,
        queue: str,
        handler: Handler,
        *,
        retry: RetryLadder,
        name: str = "consumer",
        prefetch: int = 1,
        reconnect_base: float = 0.5,
        reconnect_cap: float = 30.0,
        drain_timeout: float = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        on_give_up: GiveUpHook | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.queue = queue
        self._config = config
        self._handler = handler
        self._name = name
        self._prefetch = prefetch
        self._retry = retry
        # Retries go out on the worker threads' own connections, with confirms.
        self._republisher = Publisher(config, name=f"{name}-retry")
        self._reconnect_base = reconnect_base
        self._reconnect_cap = reconnect_cap
        self._drain_timeout = drain_timeout
        self._max_message_bytes = max_message_bytes
        self._on_give_up = on_give_up
        # Shared with the handler's long work (ffmpeg) so a stop can cut it short.
        self._stop = stop_event or threading.Event()
        self._generation = 0
        self._in_flight: set[tuple[int, int]] = set()  # (connection generation, delivery tag)
        self._in_flight_lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self.consuming = threading.Event()
        self.connections_opened = 0

    # -- control ------------------------------------------------------------

    def stop(self) -> None:
        """Ask the consumer to finish the message in hand and return from ``run``."""
        self._stop.set()

    @property
    def is_connected(self) -> bool:
        """Tell whether the consumer currently holds an open broker connection."""
        connection = self._connection
        return connection is not None and connection.is_open and self.consuming.is_set()

    def run(self) -> None:
        """Consume until ``stop()``, reconnecting with capped backoff after broker failures."""
        failures = 0
        with ThreadPoolExecutor(self._prefetch, thread_name_prefix=f"{self._name}-worker") as pool:
            while not self._stop.is_set():
                try:
                    self._consume(pool)
                    failures = 0
                except BROKER_ERRORS as exc:
                    failures += 1
                    delay = backoff_delay(
                        failures, base=self._reconnect_base, cap=self._reconnect_cap
                    )
                    log.warning(
                        "broker connection for %s lost (%r); reconnecting in %.1fs",
                        self.queue,
                        exc,
                        delay,
                    )
                    self._stop.wait(delay)
                finally:
                    self.consuming.clear()
                    self._close_connection()
        self._republisher.close()
        log.info("consumer for %s stopped", self.queue)

    # -- I/O thread -----------------------------------------------------------

    def _consume(self, pool: ThreadPoolExecutor) -> None:
        connection = pika.BlockingConnection(connection_parameters(self._config, self._name))
        self._connection = connection
        self.connections_opened += 1
        with self._in_flight_lock:
            # A delivery tag only means something on the connection that
            # delivered it: a lost connection's deliveries can never settle.
            self._generation += 1
            self._in_flight.clear()
        channel = connection.channel()
        for queue in queue_family(self.queue, self._retry):
            if queue != dead_letter_queue(self.queue):
                declare(channel, queue, delivery_limit=self._config.delivery_limit)
        channel.basic_qos(prefetch_count=self._prefetch)
        consumer_tag = channel.basic_consume(
            self.queue, functools.partial(self._on_message, pool, connection, self._generation)
        )
        self.consuming.set()
        log.info(
            "consuming %s on %s (prefetch %d)",
            self.queue,
            redact_url(self._config.url),
            self._prefetch,
        )
        next_depth_check = 0.0
        while not self._stop.is_set():
            connection.process_data_events(time_limit=0.5)
            if time.monotonic() >= next_depth_check:
                # Queue depths for dashboards, autoscaling and the dead-letter alert,
                # from the consumer's own channel: no extra connection, once per interval.
                depth = channel.queue_declare(self.queue, passive=True).method.message_count
                metrics.QUEUE_READY.labels(self.queue).set(depth)
                dead = dead_letter_queue(self.queue)
                dead_depth = channel.queue_declare(dead, passive=True).method.message_count
                metrics.DEAD_LETTERS.labels(dead).set(dead_depth)
                next_depth_check = time.monotonic() + QUEUE_DEPTH_INTERVAL
        # Stop taking new messages, then let the ones in hand finish and settle.
        channel.basic_cancel(consumer_tag)
        deadline = time.monotonic() + self._drain_timeout
        while self._busy() and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)
        if self._busy():
            log.warning("stopping with a message still in hand; the broker will redeliver it")

    def _on_message(
        self,
        pool: ThreadPoolExecutor,
        connection: pika.BlockingConnection,
        generation: int,
        channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        delivery = Delivery(
            queue=self.queue,
            attempt=attempt_of(properties),
            max_attempts=self._retry.attempts,
            message_id=properties.message_id,
        )
        token = (generation, method.delivery_tag)
        with self._in_flight_lock:
            self._in_flight.add(token)
        # After a lost connection, the redelivery of a message still in hand
        # waits here behind it, so one message is never handled twice at once.
        pool.submit(self._work, connection, channel, token, body, properties, delivery)

    def _settle(self, channel: BlockingChannel, token: tuple[int, int], outcome: _Outcome) -> None:
        _, delivery_tag = token
        try:
            if not channel.is_open:
                log.warning(
                    "channel closed before %s of a delivery; the broker will redeliver it",
                    outcome.value,
                )
            elif outcome in (_Outcome.ACK, _Outcome.RETRY):
                channel.basic_ack(delivery_tag)
            else:
                channel.basic_nack(delivery_tag, requeue=outcome is _Outcome.REQUEUE)
        finally:
            self._forget(token)

    def _forget(self, token: tuple[int, int]) -> None:
        with self._in_flight_lock:
            self._in_flight.discard(token)

    def _busy(self) -> bool:
        with self._in_flight_lock:
            return any(generation == self._generation for generation, _ in self._in_flight)

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(*BROKER_ERRORS):
                connection.close()

    # -- worker thread --------------------------------------------------------

    def _work(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        token: tuple[int, int],
        body: bytes,
        properties: pika.BasicProperties,
        delivery: Delivery,
    ) -> None:
        outcome = self._handle(body, properties, delivery)
        metrics.MESSAGES_HANDLED.labels(self.queue, outcome.value).inc()
        try:
            connection.add_callback_threadsafe(
                functools.partial(self._settle, channel, token, outcome)
            )
        except BROKER_ERRORS:
            log.warning(
                "connection lost before %s of a delivery; the broker will redeliver it",
                outcome.value,
            )
            self._forget(token)

    def _handle(
        self, body: bytes, properties: pika.BasicProperties, delivery: Delivery
    ) -> _Outcome:
        message: dict[str, Any] | None = None
        try:
            message = decode_message(body, max_bytes=self._max_message_bytes)
            with log_context(job_id=job_id_in(message)):
                self._handler(message, delivery)
            return _Outcome.ACK
        except PermanentError as exc:
            log.warning("dead-lettering message from %s: %s", self.queue, exc)
            self._give_up(message, exc)
            return _Outcome.DEAD_LETTER
        except RetryLater as exc:
            if self._stop.is_set():
                return _Outcome.REQUEUE
            # Not a failure: the same attempt again, after a step of the ladder.
            delay = self._retry.step_at_least(exc.delay)
            log.info("deferring a message from %s for %.1fs: %s", self.queue, delay, exc)
            return self._retry_later(body, properties, delivery.attempt, delay)
        except Exception as exc:  # the loop's edge: a handler bug must not kill the consumer
            if self._stop.is_set():
                # Cut short by a stop, not failed: another consumer takes it over.
                log.info("requeueing a message from %s on stop: %r", self.queue, exc)
                return _Outcome.REQUEUE
            expected = isinstance(exc, TransientError)
            limit = (
                delivery.max_attempts
                if expected
                else min(delivery.max_attempts, UNEXPECTED_ERROR_ATTEMPTS)
            )
            if delivery.attempt >= limit:
                log.error(
                    "giving up on message from %s after %d attempts: %r",
                    self.queue,
                    delivery.attempt,
                    exc,
                    exc_info=not expected,
                )
                self._give_up(message, exc)
                return _Outcome.DEAD_LETTER
            delay = self._retry.delay_after(delivery.attempt)
            log.warning(
                "attempt %d/%d on a message from %s failed (%r); retrying in %.1fs",
                delivery.attempt,
                limit,
                self.queue,
                exc,
                delay,
                exc_info=not expected,
            )
            return self._retry_later(body, properties, delivery.attempt + 1, delay)

    def _retry_later(
        self, body: bytes, properties: pika.BasicProperties, attempt: int, delay: float
    ) -> _Outcome:
        """Publish the message to the delay queue for ``delay`` as ``attempt``; the caller
        acks the original once the broker confirmed the copy."""
        headers = {
            key: value
            for key, value in (properties.headers or {}).items()
            if not key.startswith("x-")  # the broker's own (x-death, x-delivery-count)
        }
        headers[ATTEMPT_HEADER] = attempt
        again = pika.BasicProperties(
            content_type=properties.content_type,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=properties.message_id,
            timestamp=properties.timestamp,
            app_id=properties.app_id,
            headers=headers,
        )
        try:
            self._republisher.publish_raw(retry_queue(self.queue, delay), body, again)
        except TransientError as exc:
            log.warning(
                "could not schedule the retry of a message from %s (%s); requeueing it in %.0fs",
                self.queue,
                exc,
                REPUBLISH_FALLBACK_SECONDS,
            )
            self._stop.wait(REPUBLISH_FALLBACK_SECONDS)
            return _Outcome.REQUEUE
        return _Outcome.RETRY

    def _give_up(self, message: dict[str, Any] | None, error: Exception) -> None:
        if self._on_give_up is None:
            return
        try:
            self._on_give_up(message, error)
        except Exception:  # the loop's edge: dead-letter the message regardless
            log.exception("give-up hook failed for a message from %s", self.queue)


def attempt_of(properties: pika.BasicProperties) -> int:
    """Return which attempt at its message a delivery is (1 for the first)."""
    value = (properties.headers or {}).get(ATTEMPT_HEADER, 1)
    return value if isinstance(value, int) and value >= 1 else 1
