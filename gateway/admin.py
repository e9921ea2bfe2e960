"""The admin API's access rule and audit trail, and the work queues' dead letters.

Admins with a login session only: anyone else gets 403 ``forbidden``, an API key
(even an admin's) 403 ``insufficient_scope``. Every call that changes something
writes an entry to the audit log (``common.audit``) through ``audit()``; the other
admin routes are in ``gateway.admin_users`` and ``gateway.admin_system``.

Dead-letter queues go by the names of their work queues, ``video``, ``mp3`` and
``webhook`` (400 for any other), whatever they are called on the broker. Every
call opens its own broker connection (admin calls are rare) and answers 503 when
the broker is unavailable. See ``common.deadletters`` for how a walk keeps the
queue's order and where it stops, and docs/runbook.md for when to use which.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from common.audit import AuditLog
from common.deadletters import DEFAULT_PAGE, MAX_PAGE, DeadLetters, Outcome
from common.http.errors import ApiError
from common.messaging import dead_letter_queue
from gateway.identity import current_user
from gateway.services import EXTENSION as SERVICES_EXTENSION

log = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/admin")

EXTENSION = "video2mp3.gateway.admin"
# A request walks a dead-letter queue for at most this long and this many messages
# (about 1 ms a message), well inside gunicorn's and a proxy's timeouts; the answer
# says when a walk stopped short, and the command line has no such bound.
WALK_TIME_LIMIT = 10.0
WALK_MAX_MESSAGES = 10_000
MAX_IDS = 1000
MAX_ID_LENGTH = 255  # an AMQP short string
SELECTION_FIELDS = frozenset({"ids", "all", "confirm"})
# Pages further than this are not worth a skip over that many records.
MAX_OFFSET = 1_000_000


@dataclass(frozen=True)
class AdminTools:
    """The broker client for dead letters, the queues an admin may name, and the audit log."""

    dead_letters: DeadLetters
    queues: dict[str, str]  # the API's name of each work queue -> its name on the broker
    audit_log: AuditLog


@bp.record_once
def _set_up(state: BlueprintSetupState) -> None:
    """Take which queues an admin may name from the gateway's config, as the app is built."""
    services = state.app.extensions[SERVICES_EXTENSION]
    config = services.config
    queues = {"video": config.video_queue, "mp3": config.mp3_queue, "webhook": config.webhook_queue}
    state.app.extensions[EXTENSION] = AdminTools(
        dead_letters=DeadLetters(
            config.rabbit,
            name="gateway-admin",
            max_messages=WALK_MAX_MESSAGES,
            time_limit=WALK_TIME_LIMIT,
        ),
        queues=queues,
        audit_log=AuditLog(services.storage.client, config.mongo),
    )


def admin_tools() -> AdminTools:
    """Return the admin API's broker client, queue names and audit log."""
    return current_app.extensions[EXTENSION]


def require_admin() -> None:
    """Let only admins with a login session through.

    Raises:
        ApiError: 401 without a valid token; 403 ``insufficient_scope`` for an API key
            (``current_user`` refuses keys on routes that declare no scope) and
            ``forbidden`` for everyone but an admin.
    """
    if not current_user().admin:
        raise ApiError(403, "forbidden", "Only admins may use the admin API.")


bp.before_request(require_admin)


def audit(action: str, target: str, details: dict[str, Any] | None = None) -> None:
    """Record in the audit log that the calling admin did ``action`` to ``target``.

    Raises:
        TransientError: MongoDB failed.
    """
    actor = current_user().subject
    admin_tools().audit_log.record(actor=actor, action=action, target=target, details=details)
    log.info("admin %s: %s %s %s", actor, action, target, details or "")


def page_arguments(default: int = DEFAULT_PAGE, most: int = MAX_PAGE) -> tuple[int, int]:
    """Read ``limit`` and ``offset`` from the query string.

    Raises:
        ApiError: 400 ``invalid_limit`` or ``invalid_offset``.
    """
    limit = _number("limit", default, 1, most)
    return limit, _number("offset", 0, 0, MAX_OFFSET)


def _number(name: str, default: int, least: int, most: int) -> int:
    raw = request.args.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or not least <= int(raw) <= most:
        raise ApiError(400, f"invalid_{name}", f"{name} must be between {least} and {most}.")
    return int(raw)


def _broker_queue(queue: str) -> str:
    """Return the broker's name of the work queue the API calls ``queue``.

    Raises:
        ApiError: 400 ``unknown_queue`` for anything but the work queues.
    """
    queues = admin_tools().queues
    if queue not in queues:
        raise ApiError(
            400, "unknown_queue", f"queue must be one of {', '.join(queues)}.", {"field": "queue"}
        )
    return queues[queue]


@bp.get("/dead-letters")
def dead_letter_counts() -> Response:
    """Count the dead letters waiting for each work queue."""
    admin = admin_tools()
    counts = [
        {
            "queue": name,
            "dead_letter_queue": dead_letter_queue(queue),
            "messages": admin.dead_letters.count(queue),
        }
        for name, queue in admin.queues.items()
    ]
    return jsonify(queues=counts)


@bp.get("/dead-letters/<queue>")
def list_dead_letters(queue: str) -> Response:
    """Describe the first dead letters of a work queue; every one stays in the queue."""
    broker_queue = _broker_queue(queue)
    limit = _number("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    listing = admin_tools().dead_letters.list(broker_queue, limit=limit)
    return jsonify({**listing.as_dict(), "queue": queue, "limit": limit})


@bp.post("/dead-letters/<queue>/replay")
def replay_dead_letters(queue: str) -> Response:
    """Put the chosen dead letters (or all) back on their work queue as fresh messages."""
    dead_letters = admin_tools().dead_letters
    return _settle(queue, dead_letters.replay, dead_letters.replay_all, confirm_all=False)


@bp.post("/dead-letters/<queue>/discard")
def discard_dead_letters(queue: str) -> Response:
    """Delete the chosen dead letters, or all of them when confirmed."""
    dead_letters = admin_tools().dead_letters
    return _settle(queue, dead_letters.discard, dead_letters.discard_all, confirm_all=True)


def _settle(
    queue: str,
    chosen: Callable[[str, list[str]], Outcome],
    every: Callable[[str], Outcome],
    *,
    confirm_all: bool,
) -> Response:
    """Apply ``chosen`` to the dead letters the request names, or ``every`` to all of them."""
    broker_queue = _broker_queue(queue)
    ids = _selection(queue, needs_confirmation=confirm_all)
    outcome = every(broker_queue) if ids is None else chosen(broker_queue, ids)
    return _answer(queue, outcome, everything=ids is None)


def _answer(queue: str, outcome: Outcome, *, everything: bool) -> Response:
    audit(
        f"dead_letters.{outcome.action}",
        queue,
        {
            "all": everything,
            "count": outcome.count,
            "message_ids": outcome.message_ids,
            "not_found": outcome.not_found,
            "complete": outcome.complete,
        },
    )
    return jsonify({**outcome.as_dict(), "queue": queue})


def _selection(queue: str, *, needs_confirmation: bool) -> list[str] | None:
    """Read ``{"ids": [...]}`` or ``{"all": true}`` from the body; None means all.

    Discarding all also needs ``"confirm": "<queue>"``.

    Raises:
        ApiError: 400 for a body that chooses nothing, both, or carries bad ids.
    """
    body: Any = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
    unknown = sorted(set(body) - SELECTION_FIELDS)
    if unknown:
        raise ApiError(400, "invalid_request", f"Unknown fields: {', '.join(unknown)}.")
    ids, everything = body.get("ids"), body.get("all", False)
    if not isinstance(everything, bool):
        raise ApiError(400, "invalid_request", "all must be true or false.")
    if (ids is None) == (not everything):
        raise ApiError(400, "invalid_request", 'Give either "ids" (a list) or "all": true.')
    if everything:
        if needs_confirmation and body.get("confirm") != queue:
            raise ApiError(
                400,
                "confirmation_required",
                f'Discarding every dead letter needs "confirm": "{queue}".',
            )
        return None
    if (
        not isinstance(ids, list)
        or not 1 <= len(ids) <= MAX_IDS
        or not all(isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH for value in ids)
    ):
        raise ApiError(
            400,
            "invalid_ids",
            f"ids must be a list of 1 to {MAX_IDS} message ids (strings of at most "
            f"{MAX_ID_LENGTH} characters).",
            {"field": "ids"},
        )
    return ids
