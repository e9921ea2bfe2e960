"""Listing, replaying and discarding dead letters on the real broker, and the command."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pika
import pytest

from common.deadletters import MAX_PAGE, PREVIEW_CHARS, DeadLetters, main, replay_properties
from common.errors import TransientError
from common.messaging import ATTEMPT_HEADER, connection_parameters, dead_letter_queue
from tests.support.deadletters import APP_ID, PUBLISHED_AT, dead_letter, job_message, take_all
from tests.support.polling import wait_until
from tests.support.rabbit import queue_depth

# Headers a replayed message must not carry: it starts afresh.
SPENT_HEADERS = (
    ATTEMPT_HEADER,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)


@pytest.fixture
def queue(queue_name) -> str:
    return queue_name("video")


@pytest.fixture
def dead_letters(rabbitmq_config) -> DeadLetters:
    return DeadLetters(rabbitmq_config, name="test-dead-letters")


def jobs(count: int, start: int = 0) -> list[tuple[str, dict]]:
    return [job_message(number) for number in range(start, start + count)]


def ids_in(messages) -> list[str]:
    return [properties.message_id for properties, _ in messages]


def test_listing_describes_each_message_and_leaves_the_queue_as_it_was(
    rabbitmq_config, queue, dead_letters
):
    messages = jobs(3)
    dead_letter(rabbitmq_config, queue, messages)

    listing = dead_letters.list(queue)

    assert listing.total == 3
    assert listing.dead_letter_queue == dead_letter_queue(queue)
    assert [message.message_id for message in listing.messages] == [m for m, _ in messages]
    first = listing.messages[0]
    assert first.job_id == messages[0][1]["job_id"]
    assert first.reason == "rejected"
    assert first.died_in == queue
    assert abs(first.died_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert first.death_count == 1
    assert first.attempt == 3
    assert first.app_id == APP_ID
    assert first.published_at == datetime.fromtimestamp(PUBLISHED_AT, UTC)
    body = json.dumps(messages[0][1]).encode()
    assert first.size == len(body)
    assert first.preview == body.decode()
    assert first.as_dict()["died_at"].endswith("Z")
    # Nothing was taken: the same messages, in the same order, wait there still.
    again = dead_letters.list(queue)
    assert [m.message_id for m in again.messages] == [m for m, _ in messages]
    left = take_all(rabbitmq_config, dead_letter_queue(queue), 3)
    assert ids_in(left) == [m for m, _ in messages]


def test_a_listing_is_one_bounded_page_and_never_a_whole_body(rabbitmq_config, queue, dead_letters):
    huge = b"\xff not json\x1b[2J\n\x00 " + b"x" * 1_000_000
    dead_letter(rabbitmq_config, queue, [("huge", huge), *jobs(4)], attempt=None)

    listing = dead_letters.list(queue, limit=2)

    assert listing.total == 5
    assert len(listing.messages) == 2
    big = listing.messages[0]
    assert big.message_id == "huge"
    assert big.job_id is None
    assert big.size == len(huge)
    assert len(big.preview) == PREVIEW_CHARS + 1
    assert big.preview.endswith("…")
    assert big.preview.startswith("\ufffd not json\ufffd[2J \ufffd xxx")  # nothing a terminal runs
    assert big.attempt == 1  # no attempt header: the first attempt
    assert len(dead_letters.list(queue, limit=10_000).messages) == 5  # capped at MAX_PAGE
    assert MAX_PAGE == 100
    wait_until(lambda: queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 5)


def test_a_queue_that_never_dead_lettered_lists_empty(queue, dead_letters):
    listing = dead_letters.list(queue)

    assert listing.total == 0
    assert listing.messages == []
    assert dead_letters.count(queue) == 0
    assert dead_letters.replay_all(queue).count == 0


def test_replayed_messages_start_afresh_on_their_work_queue(rabbitmq_config, queue, dead_letters):
    messages = jobs(3)
    dead_letter(rabbitmq_config, queue, messages)

    outcome = dead_letters.replay_all(queue)

    assert outcome.message_ids == [m for m, _ in messages]
    assert outcome.complete
    assert outcome.not_found == []
    assert outcome.remaining == 0
    wait_until(lambda: queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 0)
    replayed = take_all(rabbitmq_config, queue, 3)
    assert ids_in(replayed) == [m for m, _ in messages]
    for (properties, body), (_, original) in zip(replayed, messages, strict=True):
        assert json.loads(body) == original
        assert properties.content_type == "application/json"
        assert properties.app_id == APP_ID
        assert properties.timestamp == PUBLISHED_AT
        assert properties.delivery_mode == pika.DeliveryMode.Persistent.value
        headers = properties.headers or {}
        assert not set(SPENT_HEADERS) & set(headers), headers
        assert headers.get("x-delivery-count", 0) == 0  # as the broker counts a fresh message
        assert headers["traceparent"].startswith("00-")  # other headers travel on


def test_a_replayed_message_that_fails_again_dies_as_a_first_death(
    rabbitmq_config, queue, dead_letters
):
    dead_letter(rabbitmq_config, queue, jobs(1))
    dead_letters.replay_all(queue)
    wait_until(lambda: queue_depth(rabbitmq_config, queue) == 1)

    connection = pika.BlockingConnection(connection_parameters(rabbitmq_config, "test"))
    channel = connection.channel()
    method, _, _ = channel.basic_get(queue)
    channel.basic_nack(method.delivery_tag, requeue=False)
    connection.close()
    wait_until(lambda: queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 1)

    [again] = dead_letters.list(queue).messages
    assert again.death_count == 1
    assert again.attempt == 1


def test_chosen_ids_are_found_past_the_first_page_and_the_rest_keep_their_order(
    rabbitmq_config, queue, dead_letters
):
    messages = jobs(30)
    dead_letter(rabbitmq_config, queue, messages)
    ids = [m for m, _ in messages]
    chosen = [ids[0], ids[17], ids[29]]

    outcome = dead_letters.replay(queue, [*chosen, "no-such-id"])

    assert outcome.message_ids == chosen
    assert outcome.not_found == ["no-such-id"]
    assert outcome.examined == 30
    assert outcome.complete
    assert outcome.remaining == 27
    assert sorted(ids_in(take_all(rabbitmq_config, queue, 3))) == sorted(chosen)
    left = ids_in(take_all(rabbitmq_config, dead_letter_queue(queue), 27))
    assert left == [i for i in ids if i not in chosen]


def test_discarding_removes_only_the_chosen_messages(rabbitmq_config, queue, dead_letters):
    messages = jobs(5)
    dead_letter(rabbitmq_config, queue, messages)
    ids = [m for m, _ in messages]

    outcome = dead_letters.discard(queue, [ids[1], ids[3]])

    assert outcome.action == "discard"
    assert outcome.message_ids == [ids[1], ids[3]]
    assert queue_depth(rabbitmq_config, queue) == 0  # nothing went back to work
    left = ids_in(take_all(rabbitmq_config, dead_letter_queue(queue), 3))
    assert left == [ids[0], ids[2], ids[4]]


def test_discarding_all_empties_the_dead_letter_queue(rabbitmq_config, queue, dead_letters):
    dead_letter(rabbitmq_config, queue, [*jobs(3), (None, b"no id, not json")])

    outcome = dead_letters.discard_all(queue)

    assert outcome.count == 4
    assert outcome.message_ids[-1] is None
    wait_until(lambda: queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 0)
    assert queue_depth(rabbitmq_config, queue) == 0


def test_a_walk_stops_at_its_bound_and_says_so(rabbitmq_config, queue):
    messages = jobs(10)
    dead_letter(rabbitmq_config, queue, messages)
    bounded = DeadLetters(rabbitmq_config, max_messages=4)

    outcome = bounded.replay(queue, [messages[2][0], messages[8][0]])

    assert outcome.message_ids == [messages[2][0]]
    assert outcome.not_found == [messages[8][0]]  # past the bound, not known to be absent
    assert outcome.examined == 4
    assert not outcome.complete
    assert outcome.remaining == 9
    everything = bounded.discard_all(queue)
    assert (everything.count, everything.complete, everything.remaining) == (4, False, 5)
    wait_until(lambda: queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 5)


def test_a_walk_stops_at_its_time_limit(rabbitmq_config, queue):
    dead_letter(rabbitmq_config, queue, jobs(3))

    outcome = DeadLetters(rabbitmq_config, time_limit=0).replay_all(queue)

    assert (outcome.count, outcome.examined, outcome.complete) == (0, 0, False)
    assert queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 3


def test_an_unreachable_broker_is_a_transient_error(rabbitmq_config, queue):
    down = dataclasses.replace(rabbitmq_config, url="amqp://guest:guest@127.0.0.1:1/%2F")

    for call in (
        lambda d: d.list(queue),
        lambda d: d.count(queue),
        lambda d: d.replay_all(queue),
        lambda d: d.discard(queue, ["x"]),
    ):
        with pytest.raises(TransientError):
            call(DeadLetters(down))


def test_replay_properties_drop_every_spent_header():
    properties = pika.BasicProperties(
        content_type="application/json",
        delivery_mode=1,
        message_id="m",
        timestamp=5,
        app_id="a",
        correlation_id="c",
        expiration="1000",
        headers=dict.fromkeys((*SPENT_HEADERS, "x-delivery-count", "keep"), "x"),
    )

    fresh = replay_properties(properties)

    assert fresh.headers == {"keep": "x"}
    assert (fresh.content_type, fresh.message_id, fresh.timestamp, fresh.app_id) == (
        "application/json",
        "m",
        5,
        "a",
    )
    assert fresh.delivery_mode == pika.DeliveryMode.Persistent.value
    assert fresh.expiration is None  # a replay must not expire on its way


# --- the command -------------------------------------------------------------------


@pytest.fixture
def command_env(rabbitmq_config, queue_name, queue):
    return {
        "RABBITMQ_URL": rabbitmq_config.url,
        "VIDEO_QUEUE": queue,
        "MP3_QUEUE": queue_name("mp3"),
        "WEBHOOK_QUEUE": queue_name("webhook"),
    }


@pytest.fixture
def run(capsys, command_env):
    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv), environ=command_env)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_the_command_lists_in_text_and_json(rabbitmq_config, queue, run):
    messages = jobs(2)
    dead_letter(rabbitmq_config, queue, messages)

    code, out, _ = run("list", "--queue", "video")
    assert code == 0
    assert f"{dead_letter_queue(queue)}: 2 message(s) waiting" in out
    assert messages[0][0] in out
    assert "rejected" in out

    code, out, _ = run("list", "--queue", "video", "--json", "--limit", "1")
    assert code == 0
    listing = json.loads(out)
    assert listing["queue"] == "video"
    assert listing["dead_letter_queue"] == dead_letter_queue(queue)
    assert listing["total"] == 2
    assert [m["message_id"] for m in listing["messages"]] == [messages[0][0]]

    code, out, _ = run("counts", "--json")
    assert code == 0
    counts = {row["queue"]: row["messages"] for row in json.loads(out)["queues"]}
    assert counts == {"video": 2, "mp3": 0, "webhook": 0}


def test_the_command_replays_and_discards(rabbitmq_config, queue, run):
    messages = jobs(4)
    dead_letter(rabbitmq_config, queue, messages)
    ids = [m for m, _ in messages]

    code, out, _ = run("replay", "--queue", "video", "--id", ids[0], "--id", ids[2])
    assert code == 0, out
    assert f"2 message(s) replayed to {queue}" in out
    wait_until(lambda: queue_depth(rabbitmq_config, queue) == 2)

    code, out, _ = run("replay", "--queue", "video", "--id", "missing", "--json")
    assert code == 1
    assert json.loads(out)["not_found"] == ["missing"]

    code, _, err = run("discard", "--queue", "video", "--all")
    assert code == 2
    assert "--yes" in err
    assert queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 2

    code, out, _ = run("discard", "--queue", "video", "--all", "--yes", "--json")
    assert code == 0
    assert json.loads(out)["message_ids"] == [ids[1], ids[3]]
    wait_until(lambda: queue_depth(rabbitmq_config, dead_letter_queue(queue)) == 0)


@pytest.mark.parametrize(
    "argv",
    [
        ["list"],
        ["list", "--queue", "videos"],
        ["replay", "--queue", "video"],
        ["replay", "--queue", "video", "--all", "--id", "x"],
        ["list", "--queue", "video", "--limit", "0"],
    ],
)
def test_the_command_refuses_bad_usage(run, argv):
    code, _, err = run(*argv)
    assert code == 2
    assert "usage:" in err


def test_the_command_says_when_the_broker_is_down(capsys):
    code = main(["counts"], environ={"RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/%2F"})
    assert code == 4
    assert "RabbitMQ unavailable" in capsys.readouterr().err
