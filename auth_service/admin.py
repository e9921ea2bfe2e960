"""The admin users API: list, change, delete users and end their sessions.

Admins with a login session only: anyone else is 403 ``forbidden``, an API key
403 ``insufficient_scope``. An admin cannot disable, demote or delete themselves
here, so the last admin cannot lock everyone out by mistake (``DELETE /me`` is the
way to leave).
"""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

from flask import Blueprint, Response, jsonify, request

from auth_service import accounts, db
from auth_service.callers import admin_session
from auth_service.views import json_object
from common.http.errors import ApiError

log = logging.getLogger(__name__)

bp = Blueprint("admin", __name__)

DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_OFFSET = 2**31 - 1
MAX_USER_ID = 2**63 - 1
MAX_QUERY_LENGTH = 254
USER_FLAGS = frozenset({"admin", "disabled"})


def user_view(user: db.User) -> dict[str, Any]:
    """Return how the admin API shows a user."""
    return {
        "id": user.id,
        "email": user.email,
        "admin": user.is_admin,
        "disabled": user.disabled,
        "created_at": user.created_at.replace(tzinfo=UTC).isoformat(),
    }


def _whole_number(name: str, default: int, minimum: int, maximum: int) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not minimum <= int(text) <= maximum:
        raise ApiError(
            400, f"invalid_{name}", f"{name} must be a whole number from {minimum} to {maximum}."
        )
    return int(text)


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "There is no user with that id.")


def _user_id(text: str) -> int:
    # Ids are BIGINTs; anything else names no user.
    if not text.isascii() or not text.isdigit() or int(text) > MAX_USER_ID:
        raise _not_found()
    return int(text)


def _not_self(caller: db.User, user_id: int, what: str) -> None:
    if caller.id == user_id:
        raise ApiError(400, "cannot_change_self", f"An admin cannot {what} themselves.")


@bp.get("/users")
def list_users() -> Response:
    """List users whose address contains ``q``, by address, a page at a time."""
    admin_session()
    query = request.args.get("q", "")
    if len(query) > MAX_QUERY_LENGTH:
        raise ApiError(400, "invalid_q", f"q must be at most {MAX_QUERY_LENGTH} characters.")
    limit = _whole_number("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    offset = _whole_number("offset", 0, 0, MAX_OFFSET)
    users, total = db.list_users(query.strip().lower(), limit=limit, offset=offset)
    return jsonify(
        users=[user_view(user) for user in users], total=total, limit=limit, offset=offset
    )


@bp.patch("/users/<user_id>")
def change_user(user_id: str) -> Response:
    """Set a user's admin and disabled flags; a change ends the user's sessions."""
    caller = admin_session().user
    target = _user_id(user_id)
    body = json_object(USER_FLAGS)
    if not body:
        raise ApiError(400, "invalid_request", "Send admin, disabled or both.")
    for name in USER_FLAGS & set(body):
        if not isinstance(body[name], bool):
            raise ApiError(400, f"invalid_{name}", f"{name} must be true or false.")
    if body.get("admin") is False or body.get("disabled") is True:
        _not_self(caller, target, "demote or disable")
    user = accounts.change_flags(target, admin=body.get("admin"), disabled=body.get("disabled"))
    if user is None:
        raise _not_found()
    log.info("admin %s set %s on user %s", caller.id, body, target)
    return jsonify(user_view(user))


@bp.delete("/users/<user_id>")
def delete_user(user_id: str) -> tuple[str, int]:
    """Delete a user and its API keys, ending its sessions."""
    caller = admin_session().user
    target = _user_id(user_id)
    _not_self(caller, target, "delete")
    if accounts.delete_user(target) is None:
        raise _not_found()
    log.info("admin %s deleted user %s", caller.id, target)
    return "", 204


@bp.post("/users/<user_id>/revoke")
def revoke_sessions(user_id: str) -> tuple[str, int]:
    """End every session of a user (API keys stay; revoke those one by one)."""
    caller = admin_session().user
    target = _user_id(user_id)
    if not accounts.revoke_sessions(target):
        raise _not_found()
    log.info("admin %s ended the sessions of user %s", caller.id, target)
    return "", 204
