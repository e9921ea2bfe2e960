"""Publisher and consumer against the real RabbitMQ broker."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from common.config import RabbitConfig
from common.errors import PermanentError, RetryLater, TransientError
from common.messaging import (
    ATTEMPT_HEADER,
    UNEXPECTED_ERROR_ATTEMPTS,
    Consumer,
    Publisher,
    dead_letter_queue,
    decode_message,
    retry_queue,
)
from common.retry import RetryLadder
from common.worker import run_worker
from devstack.stack import purge_queues
from devstack.tcp_proxy import TcpProxy
from tests.support.polling import wait_until
from tests.support.rabbit import body_of, get_message, put_raw, queue_depth, running


@pytest.fixture
def publisher(rabbitmq_config):
    publisher = Publisher(rabbitmq_config, name="test-publisher")
    yield publisher
    publisher.close()


@pytest.fixture
def proxied_config(rabbitmq_config):
    """A broker config whose connections go through a proxy the test can cut."""
    host_port = rabbitmq_config.url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    config = dataclasses.replace(
        rabbitmq_config, url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"
    )
    yield config, proxy
    proxy.close()


# The mechanism under test, not a shipped guarantee: a ladder of 50-100 ms steps.
FAST = RetryLadder(delays=(0.05, 0.1), horizon=0.15)  # 3 attempts


def ladder(attempts: int) -> RetryLadder:
    """A ladder of 50 ms steps that makes ``attempts`` attempts in all."""
    return RetryLadder(delays=(0.05,), horizon=0.05 * (attempts - 1))


@pytest.fixture
def queue(queue_name, rabbitmq_config):
    name = queue_name("work")
    yield name
    purge_queues(rabbitmq_config, [name], ladders=[FAST, *(ladder(n) for n in range(2, 7))])


def fast_consumer(config: RabbitConfig, queue: str, handler, **options) -> Consumer:
    """Build a consumer with short retry and reconnect delays for tests."""
    defaults = {
        "retry": FAST,
        "reconnect_base": 0.1,
        "reconnect_cap": 0.5,
        "name": "test-consumer",
    }
    return Consumer(config, queue, handler, **{**defaults, **options})


# -- pure pieces -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"{" + b" " * 70_000 + b"}", "exceeds"),
    ],
)
def test_decode_message_rejects_bad_bodies(body, reason):
    with pytest.raises(PermanentError, match=reason):
        decode_message(body, max_bytes=64 * 1024)


def test_decode_message_returns_the_object():
    assert decode_message(b'{"job_id": "j1", "n": 2}', max_bytes=100) == {"job_id": "j1", "n": 2}


# -- publisher ---------------------------------------------------------------------


def test_publish_stores_a_persistent_json_message(publisher, rabbitmq_config, queue):
    publisher.publish(queue, {"job_id": "j-1", "video_fid": "abc"}, message_id="j-1")

    properties, body = get_message(rabbitmq_config, queue)
    assert json.loads(body) == {"job_id": "j-1", "video_fid": "abc"}
    assert properties.delivery_mode == 2
    assert properties.content_type == "application/json"
    assert properties.message_id == "j-1"


def test_publish_declares_durable_quorum_queues_with_dead_lettering(publisher, queue):
    publisher.publish(queue, {"n": 1})

    listing = subprocess.run(
        [
            "rabbitmqctl",
            "list_queues",
            "-q",
            "--formatter",
            "json",
            "name",
            "durable",
            "type",
            "arguments",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    queues = {q["name"]: q for q in json.loads(listing.stdout)}
    assert queues[queue]["durable"]
    assert queues[queue]["type"] == "quorum"
    assert queues[dead_letter_queue(queue)]["type"] == "quorum"
    # rabbitmqctl prints arguments as [name, type, value] triples
    arguments = json.dumps(queues[queue]["arguments"])
    assert "x-dead-letter-routing-key" in arguments
    assert f'"{dead_letter_queue(queue)}"' in arguments


def test_publish_after_the_connection_was_dropped_reconnects(proxied_config, queue):
    config, proxy = proxied_config
    publisher = Publisher(config, name="test-publisher")
    try:
        publisher.publish(queue, {"n": 1})
        assert proxy.connection_count == 1
        proxy.drop()

        publisher.publish(queue, {"n": 2})

        assert proxy.connection_count == 1  # a new connection replaced the dropped one
        assert queue_depth(config, queue) == 2
    finally:
        publisher.close()


def test_publish_raises_transient_error_when_the_broker_stays_down(proxied_config, queue):
    config, proxy = proxied_config
    publisher = Publisher(config, name="test-publisher", attempts=2, retry_base=0.01)
    proxy.refuse()
    try:
        with pytest.raises(TransientError, match=queue):
            publisher.publish(queue, {"n": 1})
        proxy.accept()
        publisher.publish(queue, {"n": 2})
        assert body_of(get_message(config, queue)) == {"n": 2}
    finally:
        publisher.close()


def test_each_thread_publishes_over_its_own_connection(proxied_config, queue):
    config, proxy = proxied_config
    publisher = Publisher(config, name="test-publisher")
    errors = []

    def publish_some(start: int) -> None:
        try:
            for n in range(start, start + 20):
                publisher.publish(queue, {"n": n})
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=publish_some, args=(i * 100,)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert proxy.connection_count == 4
        assert queue_depth(config, queue) == 80
    finally:
        publisher.close()


# -- consumer ----------------------------------------------------------------------


def test_consumer_hands_messages_to_the_handler_and_acks(rabbitmq_config, publisher, queue):
    seen = []
    consumer = fast_consumer(rabbitmq_config, queue, lambda m, d: seen.append((m, d)))
    with running(consumer):
        for n in range(3):
            publisher.publish(queue, {"job_id": f"j{n}"})
        wait_until(lambda: len(seen) == 3)
    assert [m["job_id"] for m, _ in seen] == ["j0", "j1", "j2"]
    assert all(d.attempt == 1 and d.queue == queue for _, d in seen)
    assert queue_depth(rabbitmq_config, queue) == 0


def test_long_handler_keeps_heartbeats_and_its_ack_lands(rabbitmq_config, publisher, queue):
    config = dataclasses.replace(rabbitmq_config, heartbeat=2)
    calls = []

    def slow_handler(message, delivery):
        calls.append(delivery.attempt)
        time.sleep(8)  # four heartbeat intervals with the I/O thread left alone

    consumer = fast_consumer(config, queue, slow_handler)
    with running(consumer):
        publisher.publish(queue, {"job_id": "slow"})
        wait_until(lambda: calls, timeout=10)
        wait_until(lambda: not consumer._busy(), timeout=15)
        assert consumer.is_connected
    assert calls == [1]  # never redelivered: the connection survived the long work
    assert consumer.connections_opened == 1
    assert queue_depth(config, queue) == 0
    assert queue_depth(config, dead_letter_queue(queue)) == 0


def test_transient_failures_are_retried_then_succeed(rabbitmq_config, publisher, queue):
    attempts = []

    def flaky(message, delivery):
        attempts.append(delivery.attempt)
        if delivery.attempt < 3:
            raise TransientError("store is down")

    consumer = fast_consumer(rabbitmq_config, queue, flaky, retry=ladder(5))
    with running(consumer):
        publisher.publish(queue, {"job_id": "flaky"})
        wait_until(lambda: len(attempts) == 3)
        wait_until(lambda: not consumer._busy())
    assert attempts == [1, 2, 3]
    assert queue_depth(rabbitmq_config, queue) == 0
    assert queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 0


def test_transient_failures_dead_letter_after_the_bound(rabbitmq_config, publisher, queue):
    attempts, given_up = [], []

    def always_down(message, delivery):
        attempts.append(delivery.attempt)
        raise TransientError("store is down")

    consumer = fast_consumer(
        rabbitmq_config,
        queue,
        always_down,
        on_give_up=lambda m, e: given_up.append((m, str(e))),
    )
    with running(consumer):
        publisher.publish(queue, {"job_id": "doomed"})
        wait_until(lambda: given_up)
        wait_until(lambda: queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 1)
    assert attempts == [1, 2, 3]
    assert given_up == [({"job_id": "doomed"}, "store is down")]
    properties, body = get_message(rabbitmq_config, dead_letter_queue(queue))
    assert json.loads(body) == {"job_id": "doomed"}
    assert properties.headers[ATTEMPT_HEADER] == 3  # the dead letter tells how far it got


def test_a_retry_waits_in_the_broker_and_frees_the_worker(rabbitmq_config, publisher, queue):
    """With one prefetch slot, a message waiting for its retry holds nothing: the next
    message is handled during the wait, in the delay queue, not in a sleeping worker."""
    seen = []
    slow = RetryLadder(delays=(2.0,), horizon=2.0)  # 2 attempts, 2 s apart

    def handler(message, delivery):
        seen.append((message["n"], delivery.attempt, time.monotonic()))
        if message["n"] == 1 and delivery.attempt == 1:
            raise TransientError("store is down")

    consumer = fast_consumer(rabbitmq_config, queue, handler, retry=slow)
    try:
        with running(consumer):
            publisher.publish(queue, {"n": 1}, message_id="first")
            wait_until(lambda: seen)
            wait_until(lambda: queue_depth(rabbitmq_config, retry_queue(queue, 2.0)) == 1)
            publisher.publish(queue, {"n": 2})
            wait_until(lambda: len(seen) == 3, timeout=10)
    finally:
        purge_queues(rabbitmq_config, [queue], ladders=[slow])
    (_, _, failed_at), (second, _, second_at), (again, attempt, retried_at) = seen
    assert (second, again, attempt) == (2, 1, 2)
    assert second_at - failed_at < 1.0  # handled while the first waited
    assert retried_at - failed_at >= 1.9  # the delay queue's TTL, not earlier


def test_a_retried_message_keeps_its_id_and_sheds_broker_headers(rabbitmq_config, queue):
    slow = RetryLadder(delays=(30.0,), horizon=30.0)  # long enough to look at the waiting copy

    def handler(message, delivery):
        raise TransientError("store is down")

    consumer = fast_consumer(rabbitmq_config, queue, handler, retry=slow)
    waiting = retry_queue(queue, 30.0)
    try:
        with running(consumer):
            put_raw(
                rabbitmq_config,
                queue,
                b'{"job_id": "kept"}',
                message_id="kept-id",
                headers={"x-death": [{"queue": "elsewhere", "count": 9}], "traceparent": "00-ab"},
            )
            wait_until(lambda: queue_depth(rabbitmq_config, waiting) == 1)
        properties, body = get_message(rabbitmq_config, waiting)
    finally:
        purge_queues(rabbitmq_config, [queue], ladders=[slow])
    assert json.loads(body) == {"job_id": "kept"}
    assert properties.message_id == "kept-id"
    assert properties.delivery_mode == 2
    headers = dict(properties.headers)
    headers.pop("x-delivery-count", None)  # what basic.get from a quorum queue adds
    assert headers == {"traceparent": "00-ab", ATTEMPT_HEADER: 2}


def test_a_deferral_spends_no_attempt(rabbitmq_config, publisher, queue):
    calls = []

    def handler(message, delivery):
        calls.append(delivery.attempt)
        if len(calls) <= 5:  # more deferrals than the ladder has attempts
            raise RetryLater("someone else holds it", delay=0.01)

    consumer = fast_consumer(rabbitmq_config, queue, handler)
    with running(consumer):
        publisher.publish(queue, {"job_id": "deferred"})
        wait_until(lambda: len(calls) == 6)
        wait_until(lambda: not consumer._busy())
    assert calls == [1] * 6
    assert queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 0


def test_a_handler_bug_gets_a_few_attempts_not_the_whole_ladder(rabbitmq_config, publisher, queue):
    attempts = []

    def buggy(message, delivery):
        attempts.append(delivery.attempt)
        raise KeyError("oops")

    consumer = fast_consumer(
        rabbitmq_config, queue, buggy, retry=ladder(UNEXPECTED_ERROR_ATTEMPTS + 1)
    )
    with running(consumer):
        publisher.publish(queue, {"job_id": "bug"})
        wait_until(lambda: queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 1)
    assert attempts == list(range(1, UNEXPECTED_ERROR_ATTEMPTS + 1))


def test_permanent_failure_dead_letters_at_once(rabbitmq_config, publisher, queue):
    attempts, given_up = [], []

    def reject(message, delivery):
        attempts.append(delivery.attempt)
        raise PermanentError("no audio stream")

    consumer = fast_consumer(
        rabbitmq_config, queue, reject, on_give_up=lambda m, e: given_up.append(m)
    )
    with running(consumer):
        publisher.publish(queue, {"job_id": "bad"})
        wait_until(lambda: queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 1)
    assert attempts == [1]
    assert given_up == [{"job_id": "bad"}]


@pytest.mark.parametrize(
    "raw", [b"not json at all", b"[1,2,3]", b'{"job_id": "' + b"x" * 100_000 + b'"}']
)
def test_malformed_messages_are_dead_lettered_and_the_consumer_keeps_going(
    rabbitmq_config, publisher, queue, raw
):
    handled, given_up = [], []
    consumer = fast_consumer(
        rabbitmq_config,
        queue,
        lambda m, d: handled.append(m),
        on_give_up=lambda m, e: given_up.append((m, e)),
    )
    with running(consumer):
        put_raw(rabbitmq_config, queue, raw)
        publisher.publish(queue, {"job_id": "good"})
        wait_until(lambda: handled)
        wait_until(lambda: queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 1)
    assert handled == [{"job_id": "good"}]
    assert len(given_up) == 1
    assert given_up[0][0] is None
    assert isinstance(given_up[0][1], PermanentError)
    assert get_message(rabbitmq_config, dead_letter_queue(queue))[1] == raw


def test_consumer_reconnects_after_the_connection_drops(proxied_config, publisher, queue):
    config, proxy = proxied_config
    seen = []
    release = threading.Event()

    def handler(message, delivery):
        seen.append((message["n"], delivery.attempt))
        if message["n"] == 1 and delivery.attempt == 1:
            release.wait(10)  # still working when the line is cut

    consumer = fast_consumer(config, queue, handler)
    with running(consumer):
        publisher.publish(queue, {"n": 1})
        wait_until(lambda: seen)
        proxy.drop()
        release.set()
        wait_until(lambda: consumer.connections_opened >= 2 and consumer.is_connected)
        publisher.publish(queue, {"n": 2})
        wait_until(lambda: {n for n, _ in seen} == {1, 2} and len(seen) >= 3)
        wait_until(lambda: not consumer._busy())
    # The message in hand when the connection dropped was not acked, so the broker
    # delivered it again; a lost connection is not the handler failing, so it is
    # still the first attempt (the broker's delivery limit bounds crash loops).
    assert seen.count((1, 1)) == 2
    assert (2, 1) in seen
    assert queue_depth(config, queue) == 0


def test_stop_lets_the_message_in_hand_finish_and_settle(rabbitmq_config, publisher, queue):
    started, finished = threading.Event(), threading.Event()

    def handler(message, delivery):
        started.set()
        time.sleep(1.5)
        finished.set()

    consumer = fast_consumer(rabbitmq_config, queue, handler)
    with running(consumer) as thread:
        publisher.publish(queue, {"job_id": "in-hand"})
        assert started.wait(10)
        consumer.stop()
        thread.join(10)
        assert not thread.is_alive()
    assert finished.is_set()
    assert queue_depth(rabbitmq_config, queue) == 0


def test_sigterm_stops_every_consumer_of_a_worker_cleanly(rabbitmq_config, publisher, queue):
    started = threading.Event()
    handled = []

    def handler(message, delivery):
        started.set()
        time.sleep(1)
        handled.append(message)

    consumers = [fast_consumer(rabbitmq_config, queue, handler) for _ in range(2)]
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        publisher.publish(queue, {"job_id": "term"})
        threading.Thread(
            target=lambda: started.wait(10) and os.kill(os.getpid(), signal.SIGTERM)
        ).start()
        run_worker(consumers, health_host="127.0.0.1", health_port=0)  # returns on SIGTERM
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)
    assert handled == [{"job_id": "term"}]
    assert queue_depth(rabbitmq_config, queue) == 0


def test_check_reports_whether_the_broker_answers(proxied_config):
    config, proxy = proxied_config
    publisher = Publisher(config, name="test-publisher")
    try:
        publisher.check()
        proxy.refuse()
        with pytest.raises(TransientError, match="RabbitMQ unavailable"):
            publisher.check()
        proxy.accept()
        publisher.check()
    finally:
        publisher.close()


def test_check_reconnects_a_connection_left_stale_by_an_outage(proxied_config):
    config, proxy = proxied_config
    publisher = Publisher(config, name="test-publisher")
    try:
        publisher.check()
        proxy.drop()  # the broker is fine, this thread's connection is not
        publisher.check()
        assert proxy.connection_count == 1
    finally:
        publisher.close()
