"""Dead letters: list, replay and discard what the work queues gave up on.

Every work queue dead-letters into ``<queue>.dead`` (see ``common.messaging``).
This module is the operator's side of those queues, used by the gateway's admin
API and by the command ``python -m common.deadletters``:

* ``list`` takes up to a page of messages with ``basic_get`` and manual acks and
  hands them all back at once, so nothing is lost. RabbitMQ 3.x puts returned
  quorum-queue messages at the back (4.x at the front): a queue longer than the
  page then shows its next page on the next listing.
* ``replay`` republishes a message to its work queue as a fresh first attempt
  (without the retry and death headers), waits for the broker's confirm, and only
  then acks it off the dead queue: a crash in between duplicates, never loses.
* ``discard`` acks messages off the dead queue for good.

Replay and discard walk the queue holding every message they pass over, and hand
those back together at the end, so a message handed back can never come round
again in the same walk, wherever the broker puts it. A walk stops after the
messages that were waiting when it began, or at its bound of messages or time;
its result says whether it saw them all. While a walk holds messages, other
walks and listings cannot see them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from common.config import Env, RabbitConfig
from common.errors import ConfigError, TransientError
from common.logs import log_context
from common.messages import job_id_in
from common.messaging import (
    ATTEMPT_HEADER,
    BROKER_ERRORS,
    connection_parameters,
    dead_letter_queue,
)

log = logging.getLogger(__name__)

# Headers the broker adds when it dead-letters or redelivers a message; a replay drops
# them and the consumer's ATTEMPT_HEADER, so the message starts afresh.
BROKER_HEADERS = frozenset({"x-death", "x-delivery-count"})
BROKER_HEADER_PREFIXES = ("x-first-death-", "x-last-death-")
DEFAULT_PAGE = 20
MAX_PAGE = 100
PREVIEW_CHARS = 200
# Bodies larger than this are not parsed for their job id; a work message is far smaller.
MAX_PARSED_BYTES = 64 * 1024
DEFAULT_MAX_MESSAGES = 10_000
DEFAULT_TIME_LIMIT = 60.0
# At most this long a call waits for the messages it handed back to be ready again.
HAND_BACK_WAIT = 2.0
NOT_FOUND = 404
_PAST = {"replay": "replayed", "discard": "discarded"}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What an operator needs to know about one message in a dead-letter queue."""

    message_id: str | None
    job_id: str | None
    # From the broker's x-death entry for its last death: why (rejected, delivery_limit,
    # expired, maxlen), in which queue, when, and how often it died there for that reason.
    reason: str | None
    died_in: str | None
    died_at: datetime | None
    death_count: int
    attempt: int  # the consumer's attempt it died on (1 when it did not count)
    app_id: str | None
    published_at: datetime | None
    size: int
    preview: str

    def as_dict(self) -> dict[str, Any]:
        """Return the message as JSON-ready values, times in ISO 8601 UTC."""
        body = asdict(self)
        body["died_at"] = _iso(self.died_at)
        body["published_at"] = _iso(self.published_at)
        return body


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """A work queue's depth and consumers (None while it does not exist) and its dead letters."""

    queue: str
    messages: int | None
    consumers: int | None
    dead_letters: int


@dataclass(frozen=True, slots=True)
class Listing:
    """The first messages of a dead-letter queue and how many wait in it."""

    queue: str
    dead_letter_queue: str
    total: int
    messages: list[DeadLetter]

    def as_dict(self) -> dict[str, Any]:
        """Return the listing as JSON-ready values."""
        return {
            "queue": self.queue,
            "dead_letter_queue": self.dead_letter_queue,
            "total": self.total,
            "messages": [message.as_dict() for message in self.messages],
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a replay or discard did."""

    action: str  # "replay" or "discard"
    queue: str
    dead_letter_queue: str
    message_ids: list[str | None]  # of the messages replayed or discarded, in queue order
    not_found: list[str]  # requested ids the walk did not meet
    examined: int  # messages the walk took off the queue and looked at
    complete: bool  # the walk saw every message that waited when it began
    remaining: int  # of the messages that waited when it began, those still there

    @property
    def count(self) -> int:
        """Return how many messages were replayed or discarded."""
        return len(self.message_ids)

    def as_dict(self) -> dict[str, Any]:
        """Return the outcome as JSON-ready values."""
        return {
            "action": self.action,
            "queue": self.queue,
            "dead_letter_queue": self.dead_letter_queue,
            "count": self.count,
            "message_ids": self.message_ids,
            "not_found": self.not_found,
            "examined": self.examined,
            "complete": self.complete,
            "remaining": self.remaining,
        }


class DeadLetters:
    """List, replay and discard the dead letters of work queues on one broker.

    Each call opens its own connection and closes it before returning; a walk
    takes at most ``max_messages`` messages off a queue and stops starting new
    ones after ``time_limit`` seconds.
    """

    def __init__(
        self,
        config: RabbitConfig,
        *,
        name: str = "dead-letters",
        max_messages: int = DEFAULT_MAX_MESSAGES,
        time_limit: float = DEFAULT_TIME_LIMIT,
    ) -> None:
        self._config = config
        self._name = name
        self._max_messages = max_messages
        self._time_limit = time_limit

    def count(self, queue: str) -> int:
        """Return how many messages wait in ``queue``'s dead-letter queue (0 if it has none).

        Raises:
            TransientError: the broker is unavailable.
        """
        with self._channel() as channel:
            return _ready(channel, dead_letter_queue(queue)) or 0

    def statuses(self, queues: Sequence[str]) -> list[QueueStatus]:
        """Return each work queue's depth, consumers and dead letters, over one connection.

        Raises:
            TransientError: the broker is unavailable.
        """
        found = []
        with self._channel() as channel:
            for queue in queues:
                declared = _declared(channel, queue)
                found.append(
                    QueueStatus(
                        queue=queue,
                        messages=None if declared is None else declared.message_count,
                        consumers=None if declared is None else declared.consumer_count,
                        dead_letters=_ready(channel, dead_letter_queue(queue)) or 0,
                    )
                )
        return found

    def list(self, queue: str, *, limit: int = DEFAULT_PAGE) -> Listing:
        """Describe up to ``limit`` (at most ``MAX_PAGE``) messages of ``queue``'s dead letters.

        Every message is handed back to the queue; none is acked.

        Raises:
            TransientError: the broker is unavailable.
        """
        limit = max(1, min(limit, MAX_PAGE))
        dead_queue = dead_letter_queue(queue)
        messages: list[DeadLetter] = []
        with self._channel() as channel:
            total = _ready(channel, dead_queue)
            if total:
                for _ in range(min(limit, total)):
                    method, properties, body = channel.basic_get(dead_queue, auto_ack=False)
                    if method is None:
                        break
                    messages.append(describe(properties, body))
                if messages:
                    _hand_back(channel, dead_queue, total)
        return Listing(queue, dead_queue, total or 0, messages)

    def replay(self, queue: str, message_ids: Collection[str]) -> Outcome:
        """Put the dead letters with these message ids back on ``queue`` as fresh messages.

        Raises:
            TransientError: the broker is unavailable or refused a message.
        """
        return self._walk("replay", queue, frozenset(message_ids))

    def replay_all(self, queue: str) -> Outcome:
        """Put every dead letter of ``queue`` back on it, as far as the walk's bounds allow.

        Raises:
            TransientError: the broker is unavailable or refused a message.
        """
        return self._walk("replay", queue, None)

    def discard(self, queue: str, message_ids: Collection[str]) -> Outcome:
        """Delete the dead letters of ``queue`` with these message ids.

        Raises:
            TransientError: the broker is unavailable.
        """
        return self._walk("discard", queue, frozenset(message_ids))

    def discard_all(self, queue: str) -> Outcome:
        """Delete every dead letter of ``queue``, as far as the walk's bounds allow.

        Raises:
            TransientError: the broker is unavailable.
        """
        return self._walk("discard", queue, None)

    def _walk(self, action: str, queue: str, wanted: frozenset[str] | None) -> Outcome:
        """Replay or discard the selected messages (None: all), holding the others until done."""
        dead_queue = dead_letter_queue(queue)
        done: list[str | None] = []
        examined = held = 0
        with self._channel() as channel:
            waiting = 0 if wanted is not None and not wanted else _ready(channel, dead_queue) or 0
            deadline = time.monotonic() + self._time_limit
            # Messages dead-lettered after this point (a replay failing again) lie behind
            # the ones counted here, so stopping at the count keeps them out of the walk.
            while examined < waiting and examined < self._max_messages:
                if time.monotonic() >= deadline:
                    break
                method, properties, body = channel.basic_get(dead_queue, auto_ack=False)
                if method is None:
                    waiting = examined  # someone else took the rest
                    break
                examined += 1
                message_id = properties.message_id
                if wanted is not None and message_id not in wanted:
                    held += 1
                    continue
                if action == "replay":
                    # Confirmed before the ack: a crash in between duplicates the message.
                    channel.basic_publish(
                        "", queue, body, replay_properties(properties), mandatory=True
                    )
                channel.basic_ack(method.delivery_tag)
                done.append(message_id)
                with log_context(job_id=_job_id(body)):
                    log.info("%s message %s from %s", _PAST[action], message_id, dead_queue)
            if held:
                _hand_back(channel, dead_queue, waiting - len(done))
        found = {message_id for message_id in done if message_id is not None}
        return Outcome(
            action=action,
            queue=queue,
            dead_letter_queue=dead_queue,
            message_ids=done,
            not_found=sorted((wanted or frozenset()) - found),
            examined=examined,
            complete=examined >= waiting,
            remaining=max(waiting - len(done), 0),
        )

    @contextlib.contextmanager
    def _channel(self) -> Iterator[BlockingChannel]:
        """Open a connection and a confirming channel for one call; close them after.

        Raises:
            TransientError: the broker is unavailable, or the connection broke.
        """
        connection = None
        try:
            connection = pika.BlockingConnection(connection_parameters(self._config, self._name))
            channel = connection.channel()
            channel.confirm_delivery()
            yield channel
        except BROKER_ERRORS as exc:
            # Whatever the walk held goes back to the queue with the connection.
            raise TransientError(f"RabbitMQ unavailable for dead letters: {exc!r}") from exc
        finally:
            if connection is not None and connection.is_open:
                with contextlib.suppress(*BROKER_ERRORS):
                    connection.close()


def _ready(channel: BlockingChannel, queue: str) -> int | None:
    """Return how many messages wait in ``queue``, or None when there is no such queue."""
    declared = _declared(channel, queue)
    return None if declared is None else declared.message_count


def _declared(channel: BlockingChannel, queue: str) -> Any:
    """Return the broker's Queue.DeclareOk for ``queue`` (depth and consumers), None if absent."""
    # A passive declare of a missing queue closes the channel it ran on: use a spare one.
    probe = channel.connection.channel()
    try:
        return probe.queue_declare(queue, passive=True).method
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == NOT_FOUND:
            return None
        raise
    finally:
        if probe.is_open:
            probe.close()


def _hand_back(channel: BlockingChannel, queue: str, expected: int) -> None:
    """Return every message the channel holds to ``queue``; wait (briefly) until they are back.

    A quorum queue takes returned messages in asynchronously: without the wait, a
    listing or walk right after this one would miss them.
    """
    channel.basic_nack(0, multiple=True, requeue=True)
    deadline = time.monotonic() + HAND_BACK_WAIT
    while (_ready(channel, queue) or 0) < expected and time.monotonic() < deadline:
        time.sleep(0.02)


def replay_properties(properties: pika.BasicProperties) -> pika.BasicProperties:
    """Return the properties a replayed message goes out with: its own, as a first attempt."""
    headers = {
        name: value
        for name, value in (properties.headers or {}).items()
        if name != ATTEMPT_HEADER
        and name not in BROKER_HEADERS
        and not name.startswith(BROKER_HEADER_PREFIXES)
    }
    return pika.BasicProperties(
        content_type=properties.content_type,
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=properties.message_id,
        timestamp=properties.timestamp,
        app_id=properties.app_id,
        headers=headers or None,
    )


def describe(properties: pika.BasicProperties, body: bytes) -> DeadLetter:
    """Describe a dead-lettered message from its properties, its x-death header and its body."""
    headers = properties.headers or {}
    deaths = [death for death in headers.get("x-death") or () if isinstance(death, Mapping)]
    # The broker keeps the most recent death first; older ones may be a delay queue's
    # expiries on the way back to the work queue.
    last = deaths[0] if deaths else {}
    preview = _printable(body[: PREVIEW_CHARS * 4].decode("utf-8", errors="replace"))
    if len(preview) > PREVIEW_CHARS or len(body) > PREVIEW_CHARS * 4:
        preview = preview[:PREVIEW_CHARS] + "…"
    return DeadLetter(
        message_id=properties.message_id,
        job_id=_job_id(body),
        reason=_text(last.get("reason")),
        died_in=_text(last.get("queue")),
        died_at=_utc(last.get("time")),
        death_count=_int(last.get("count")) or 0,
        attempt=_int(headers.get(ATTEMPT_HEADER)) or 1,
        app_id=properties.app_id,
        published_at=_utc(properties.timestamp),
        size=len(body),
        preview=preview,
    )


def _printable(text: str) -> str:
    """Return ``text`` safe for a terminal: no control characters, no escape sequences."""
    return "".join(
        char if char.isprintable() else " " if char.isspace() else "\ufffd" for char in text
    )


def _job_id(body: bytes) -> str | None:
    if len(body) > MAX_PARSED_BYTES:
        return None
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return job_id_in(message)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _utc(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


# --- the operator's command ------------------------------------------------------

PROG = "python -m common.deadletters"
EXIT_OK = 0
EXIT_INCOMPLETE = 1  # some requested ids were not found, or a walk stopped at its bound
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 4
# The work queues that dead-letter, by the names operators use, and the variable
# that renames each on the broker.
WORK_QUEUES = {"video": "VIDEO_QUEUE", "mp3": "MP3_QUEUE", "webhook": "WEBHOOK_QUEUE"}


def work_queues(env: Env) -> dict[str, str]:
    """Map each work queue's usual name to its name on the broker, from the environment."""
    return {name: env.str(variable, name) for name, variable in WORK_QUEUES.items()}


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser: one subcommand per action."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="List, replay and discard the messages in the dead-letter queues "
        "(<queue>.dead). The broker is RABBITMQ_URL; VIDEO_QUEUE, MP3_QUEUE and "
        "WEBHOOK_QUEUE rename the queues as they do for the services.",
        epilog="Exit status: 0 done, 1 some ids not found or the walk stopped at its bound, "
        "2 usage or configuration, 4 broker unavailable.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, *, queue_required: bool = True) -> Any:
        sub = commands.add_parser(name, parents=[common], help=summary, description=summary)
        sub.add_argument(
            "--queue",
            choices=tuple(WORK_QUEUES),
            required=queue_required,
            help="the work queue whose dead letters to handle",
        )
        return sub

    command("counts", "Show how many dead letters wait for each work queue.", queue_required=False)
    listing = command("list", "Show the first dead letters of a queue; nothing is removed.")
    listing.add_argument(
        "--limit",
        type=_bounded(1, MAX_PAGE),
        default=DEFAULT_PAGE,
        metavar="N",
        help=f"show at most N messages (1-{MAX_PAGE}, default {DEFAULT_PAGE})",
    )
    for name, summary in (
        ("replay", "Put dead letters back on their work queue as fresh first attempts."),
        ("discard", "Delete dead letters for good."),
    ):
        sub = command(name, summary)
        chosen = sub.add_mutually_exclusive_group(required=True)
        chosen.add_argument(
            "--id",
            dest="ids",
            action="append",
            metavar="MESSAGE_ID",
            help="a message id from 'list' (repeat for several)",
        )
        chosen.add_argument("--all", action="store_true", help="every dead letter of the queue")
        if name == "discard":
            sub.add_argument("--yes", action="store_true", help="confirm --all")
        sub.add_argument(
            "--max-messages",
            type=_bounded(1, 1_000_000),
            default=DEFAULT_MAX_MESSAGES,
            metavar="N",
            help=f"look at most at N messages (default {DEFAULT_MAX_MESSAGES})",
        )
        sub.add_argument(
            "--time-limit",
            type=_bounded(1, 3600),
            default=int(DEFAULT_TIME_LIMIT),
            metavar="SECONDS",
            help=f"stop walking the queue after this long (default {DEFAULT_TIME_LIMIT:g})",
        )
    return parser


def _bounded(minimum: int, maximum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum} to {maximum}, got {value}")
        return value

    return parse


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the command line ``argv`` (default: the process's) and return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "discard" and args.all and not args.yes:
        _fail("discard --all deletes every dead letter of the queue; add --yes to confirm")
        return EXIT_USAGE
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    # pika warns of every channel the broker closes, such as a look at a missing queue.
    logging.getLogger("pika").setLevel(logging.ERROR)
    env = Env(environ)
    try:
        config = RabbitConfig.from_env(env)
        queues = work_queues(env)
    except ConfigError as exc:
        _fail(f"configuration error: {exc}")
        return EXIT_USAGE
    if args.command in ("replay", "discard"):
        dead_letters = DeadLetters(
            config,
            name="deadletters-cli",
            max_messages=args.max_messages,
            time_limit=args.time_limit,
        )
    else:
        dead_letters = DeadLetters(config, name="deadletters-cli")
    try:
        return _run(args, dead_letters, queues)
    except TransientError as exc:
        _fail(str(exc))
        return EXIT_UNAVAILABLE


def _run(args: argparse.Namespace, dead_letters: DeadLetters, queues: dict[str, str]) -> int:
    if args.command == "counts":
        names = [args.queue] if args.queue else list(queues)
        counts = [
            {
                "queue": name,
                "dead_letter_queue": dead_letter_queue(queues[name]),
                "messages": dead_letters.count(queues[name]),
            }
            for name in names
        ]
        _say(json.dumps({"queues": counts}, indent=2) if args.json else _counts_text(counts))
        return EXIT_OK
    queue = queues[args.queue]
    if args.command == "list":
        listing = dead_letters.list(queue, limit=args.limit)
        body = {**listing.as_dict(), "queue": args.queue}
        _say(json.dumps(body, indent=2) if args.json else _listing_text(listing))
        return EXIT_OK
    if args.command == "replay":
        outcome = (
            dead_letters.replay_all(queue) if args.all else dead_letters.replay(queue, args.ids)
        )
    else:
        outcome = (
            dead_letters.discard_all(queue) if args.all else dead_letters.discard(queue, args.ids)
        )
    body = {**outcome.as_dict(), "queue": args.queue}
    _say(json.dumps(body, indent=2) if args.json else _outcome_text(outcome))
    return EXIT_OK if outcome.complete and not outcome.not_found else EXIT_INCOMPLETE


def _counts_text(counts: list[dict[str, Any]]) -> str:
    rows = [(row["dead_letter_queue"], str(row["messages"])) for row in counts]
    return _table(("DEAD-LETTER QUEUE", "MESSAGES"), rows)


def _listing_text(listing: Listing) -> str:
    head = f"{listing.dead_letter_queue}: {listing.total} message(s) waiting"
    if not listing.messages:
        return head
    if len(listing.messages) < listing.total:
        head += f", the first {len(listing.messages)} shown"
    rows = [
        (
            message.message_id or "-",
            message.job_id or "-",
            message.reason or "-",
            _iso(message.died_at) or "-",
            str(message.death_count),
            str(message.size),
            _one_line(message.preview, 48),
        )
        for message in listing.messages
    ]
    table = _table(("MESSAGE ID", "JOB ID", "REASON", "DIED AT", "DEATHS", "SIZE", "BODY"), rows)
    return f"{head}\n{table}"


def _outcome_text(outcome: Outcome) -> str:
    verb = "replayed to " + outcome.queue if outcome.action == "replay" else "discarded"
    lines = [f"{outcome.count} message(s) {verb} from {outcome.dead_letter_queue}"]
    lines += [f"  {message_id or '(no message id)'}" for message_id in outcome.message_ids]
    if outcome.not_found:
        lines.append("not found: " + " ".join(outcome.not_found))
    if not outcome.complete:
        lines.append(
            f"stopped after looking at {outcome.examined} message(s); "
            f"{outcome.remaining} left: run again, or raise --max-messages/--time-limit"
        )
    return "\n".join(lines)


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    table = [headers, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return "\n".join(
        "  ".join(f"{value:<{width}}" for value, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _fail(text: str) -> None:
    sys.stderr.write(f"deadletters: {text}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
