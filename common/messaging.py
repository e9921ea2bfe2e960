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
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from common import metrics
from common.config import RabbitConfig, redact_url
from common.errors import PermanentError, TransientError
from common.logs import log_context
from common.retry import backoff_delay

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
QUEUE_DEPTH_INTERVAL = 5.0  # seconds between a consumer's looks at its queue's depth
# pika raises these (and OSError from the socket) when the broker or the path
# to it fails; everything else escaping pika is a programming error.
BROKER_ERRORS = (pika.exceptions.AMQPError, OSError)


def dead_letter_queue(queue: str) -> str:
    """Return the name of the queue that holds ``queue``'s dead letters."""
    return f"{queue}.dead"


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
            declare_queue(channel, queue, delivery_limit=self._config.delivery_limit)
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

    @property
    def is_last_attempt(self) -> bool:
        """Tell whether a transient failure now dead-letters the message."""
        return self.attempt >= self.max_attempts


Handler = Callable[[dict[str, Any], Delivery], None]
GiveUpHook = Callable[[dict[str, Any] | None, Exception], None]


class _Outcome(enum.Enum):
    ACK = "ack"
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
    """Consume one queue: prefetch, manual acks, bounded retries, reconnects, clean stop."""

    def __init__(
        self,
        config: RabbitConfig,
        queue: str,
        handler: Handler,
        *,
        name: str = "consumer",
        prefetch: int = 1,
        max_attempts: int = 5,
        retry_base: float = 1.0,
        retry_cap: float = 30.0,
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
        self._max_attempts = max_attempts
        self._retry_base = retry_base
        self._retry_cap = retry_cap
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

    def install_signal_handlers(self) -> None:
        """Stop cleanly on SIGTERM and SIGINT; call from the main thread."""

        def handle(signum: int, _frame: object) -> None:
            log.info("received %s, stopping after the message in hand", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

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
        declare_queue(channel, self.queue, delivery_limit=self._config.delivery_limit)
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
                # Queue depth for dashboards and autoscaling views, from the consumer's
                # own channel: no extra connection, at most once per interval.
                depth = channel.queue_declare(self.queue, passive=True).method.message_count
                metrics.QUEUE_READY.labels(self.queue).set(depth)
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
        headers = properties.headers or {}
        delivery = Delivery(
            queue=self.queue,
            attempt=int(headers.get("x-delivery-count", 0)) + 1,
            max_attempts=self._max_attempts,
            message_id=properties.message_id,
        )
        token = (generation, method.delivery_tag)
        with self._in_flight_lock:
            self._in_flight.add(token)
        # After a lost connection, the redelivery of a message still in hand
        # waits here behind it, so one message is never handled twice at once.
        pool.submit(self._work, connection, channel, token, body, delivery)

    def _settle(self, channel: BlockingChannel, token: tuple[int, int], outcome: _Outcome) -> None:
        _, delivery_tag = token
        try:
            if not channel.is_open:
                log.warning(
                    "channel closed before %s of a delivery; the broker will redeliver it",
                    outcome.value,
                )
            elif outcome is _Outcome.ACK:
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
        delivery: Delivery,
    ) -> None:
        outcome = self._handle(body, delivery)
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

    def _handle(self, body: bytes, delivery: Delivery) -> _Outcome:
        message: dict[str, Any] | None = None
        try:
            message = decode_message(body, max_bytes=self._max_message_bytes)
            job_id = message.get("job_id")
            with log_context(job_id=job_id if isinstance(job_id, str) else None):
                self._handler(message, delivery)
            return _Outcome.ACK
        except PermanentError as exc:
            log.warning("dead-lettering message from %s: %s", self.queue, exc)
            self._give_up(message, exc)
            return _Outcome.DEAD_LETTER
        except Exception as exc:  # the loop's edge: a handler bug must not kill the consumer
            if self._stop.is_set():
                # Cut short by a stop, not failed: another consumer takes it over.
                log.info("requeueing a message from %s on stop: %r", self.queue, exc)
                return _Outcome.REQUEUE
            if delivery.is_last_attempt:
                log.exception(
                    "giving up on message from %s after %d attempts", self.queue, delivery.attempt
                )
                self._give_up(message, exc)
                return _Outcome.DEAD_LETTER
            delay = backoff_delay(delivery.attempt, base=self._retry_base, cap=self._retry_cap)
            log.warning(
                "attempt %d/%d on a message from %s failed (%r); retrying in %.1fs",
                delivery.attempt,
                self._max_attempts,
                self.queue,
                exc,
                delay,
                exc_info=not isinstance(exc, TransientError),
            )
            self._stop.wait(delay)
            return _Outcome.REQUEUE

    def _give_up(self, message: dict[str, Any] | None, error: Exception) -> None:
        if self._on_give_up is None:
            return
        try:
            self._on_give_up(message, error)
        except Exception:  # the loop's edge: dead-letter the message regardless
            log.exception("give-up hook failed for a message from %s", self.queue)


def purge_queues(config: RabbitConfig, queues: Iterable[str]) -> None:
    """Delete the named queues and their dead-letter queues, for tests and teardown."""
    connection = pika.BlockingConnection(connection_parameters(config, "purge"))
    try:
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue)
            channel.queue_delete(dead_letter_queue(queue))
    finally:
        connection.close()
