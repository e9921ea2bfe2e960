"""The admin API's users: auth's accounts with their usage and quotas, and changes to them.

Auth owns the accounts (``GET/POST /users``, ``PATCH/DELETE /users/<id>``,
``POST /users/<id>/revoke``): these routes forward the admin's own token there and
hand auth's refusals back as they are, so auth checks the admin too. What MongoDB
holds is added here: each listed user's stored bytes (both buckets), active and
total jobs, and quota overrides, in one query per collection for the whole page.

Deleting a user goes the way ``DELETE /me`` does (``gateway.accounts.delete_account``):
recorded first, then auth deletes the account, then as many of the user's jobs and
files as fit in about two seconds go; the converters' janitor erases the rest. It needs
``{"confirm": "<the user's email>"}``, which also names whose data to erase, and so
does setting quotas, which are kept by email (a deleted user's go with them).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, make_response, request

from common.errors import TransientError
from common.http.errors import ApiError
from gateway.accounts import delete_account
from gateway.admin import MAX_PAGE, audit, page_arguments, require_admin
from gateway.auth_client import AuthAnswer, Caller
from gateway.quotas import QUOTA_NAMES
from gateway.services import services

bp = Blueprint("admin_users", __name__, url_prefix="/admin/users")
bp.before_request(require_admin)

PATCH_FIELDS = {
    "admin": ("user.promote", "user.demote"),
    "disabled": ("user.disable", "user.enable"),
}
# A quota an admin sets: up to 2**53 so that every client's JSON numbers hold it exactly.
MAX_QUOTA = 2**53
MAX_QUERY_LENGTH = 255
MAX_ID_DIGITS = 19  # a BIGINT
MAX_BODY_BYTES = 16 * 1024  # the largest body, a new user's, is tiny


def _caller() -> Caller:
    return Caller(
        authorization=request.headers.get("Authorization"),
        client_ip=request.remote_addr,
        request_id=request.headers.get("X-Request-ID"),
    )


def _handed_back(answer: AuthAnswer) -> Response:
    return Response(answer.body, status=answer.status, headers=answer.headers)


def _auth_json(answer: AuthAnswer) -> Any:
    """Return the JSON of a successful answer of auth's.

    Raises:
        TransientError: auth answered success without the JSON it documents.
    """
    try:
        return answer.json()
    except ValueError as exc:
        raise TransientError(f"auth answered malformed JSON: {exc}") from exc


@bp.get("")
def list_users() -> Response:
    """List auth's users (``q``: part of an email) with their usage and quota overrides."""
    limit, offset = page_arguments(most=MAX_PAGE)
    query = request.args.get("q", "")
    if len(query) > MAX_QUERY_LENGTH:
        raise ApiError(400, "invalid_query", f"q must be at most {MAX_QUERY_LENGTH} characters.")
    params = urlencode({"q": query, "limit": limit, "offset": offset})
    answer = services().auth.forward("GET", f"/users?{params}", _caller())
    if answer.status != 200:
        return _handed_back(answer)
    listing = _auth_json(answer)
    users = listing.get("users") or []
    emails = [user["email"] for user in users]
    svc = services()
    stored = svc.storage.videos.bytes_by_owner(emails)
    for email, size in svc.storage.mp3s.bytes_by_owner(emails).items():
        stored[email] = stored.get(email, 0) + size
    jobs = svc.jobs.counts_by_owner(emails)
    overrides = svc.intake.overrides.of_owners(emails)
    for user in users:
        email = user["email"]
        active, total = jobs.get(email, (0, 0))
        user["usage"] = {"stored_bytes": stored.get(email, 0), "active_jobs": active, "jobs": total}
        override = overrides.get(email, {})
        user["quota_overrides"] = {name: override.get(name) for name in QUOTA_NAMES}
    return jsonify(
        users=users,
        total=listing.get("total", len(users)),
        limit=listing.get("limit", limit),
        offset=listing.get("offset", offset),
        default_quotas=svc.config.quotas.as_dict(),
    )


@bp.post("")
def create_user() -> Response:
    """Create a user (``{"email", "password", "admin"}``) through auth."""
    body = _json_object()
    answer = services().auth.forward("POST", "/users", _caller(), json_body=body)
    if answer.status == 201:
        created = _auth_json(answer)
        audit(
            "user.create",
            created.get("email", ""),
            {"id": created.get("id"), "admin": created.get("admin")},
        )
    return _handed_back(answer)


@bp.patch("/<user_id>")
def change_user(user_id: str) -> Response:
    """Disable or enable a user, or make or unmake them an admin (ends their sessions)."""
    number = _user_number(user_id)
    body = _json_object()
    unknown = sorted(set(body) - set(PATCH_FIELDS))
    if unknown or not body:
        raise ApiError(400, "invalid_request", 'Give "admin" and/or "disabled" (true or false).')
    for name, value in body.items():
        if not isinstance(value, bool):
            raise ApiError(400, f"invalid_{name}", f"{name} must be true or false.")
    answer = services().auth.forward("PATCH", f"/users/{number}", _caller(), json_body=body)
    if 200 <= answer.status < 300:
        changed = _auth_json(answer) if answer.body else None
        target = _target(number, changed)
        for name, value in body.items():
            granted, withdrawn = PATCH_FIELDS[name]
            audit(granted if value else withdrawn, target, {"id": number})
    return _handed_back(answer)


@bp.post("/<user_id>/revoke")
def revoke_sessions(user_id: str) -> Response:
    """End every session and token of a user."""
    number = _user_number(user_id)
    answer = services().auth.forward("POST", f"/users/{number}/revoke", _caller())
    if 200 <= answer.status < 300:
        audit("user.revoke", _target(number, None), {"id": number})
    return _handed_back(answer)


@bp.delete("/<user_id>")
def delete_user(user_id: str) -> Response:
    """Delete a user and all their jobs and files; ``{"confirm": "<their email>"}``."""
    number = _user_number(user_id)
    email = _confirmed_email(number, _json_object().get("confirm"), "confirmation_required")
    caller = _caller()
    response = make_response(
        delete_account(email, lambda: services().auth.forward("DELETE", f"/users/{number}", caller))
    )
    if response.status_code in (200, 202):
        audit("user.delete", email, {"id": number, **response.get_json()})
    return response


@bp.put("/<user_id>/quotas")
def set_quotas(user_id: str) -> Response:
    """Set a user's quotas apart from the defaults: ``{"email", <quota>: int or null}``."""
    number = _user_number(user_id)
    body = _json_object()
    unknown = sorted(set(body) - {"email", *QUOTA_NAMES})
    if unknown:
        raise ApiError(400, "invalid_request", f"Unknown fields: {', '.join(unknown)}.")
    quotas: dict[str, int | None] = {}
    for name in QUOTA_NAMES:
        value = body.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUOTA
        ):
            raise ApiError(
                400,
                "invalid_quota",
                f"{name} must be a whole number from 0 to {MAX_QUOTA}, or null for the default.",
                extra={"field": name},
            )
        quotas[name] = value
    email = _confirmed_email(number, body.get("email"), "invalid_email")
    services().intake.overrides.set(email, quotas)
    audit("quotas.set", email, {"id": number, **quotas})
    return jsonify(email=email, quota_overrides=quotas)


def _user_number(user_id: str) -> int:
    """Return the user id in a path as auth's number.

    Raises:
        ApiError: 404 ``not_found`` for anything but a number, which no user has.
    """
    if not user_id.isascii() or not user_id.isdigit() or len(user_id) > MAX_ID_DIGITS:
        raise ApiError(404, "not_found", "No such user.")
    return int(user_id)


def _json_object() -> dict[str, Any]:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"The request body exceeds {MAX_BODY_BYTES} bytes.")
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
    return body


def _target(user_id: int, user: Any) -> str:
    """Name a user in the audit log: their email when auth said it, else their id."""
    if isinstance(user, dict) and isinstance(user.get("email"), str):
        return user["email"]
    return f"user {user_id}"


def _confirmed_email(user_id: int, email: Any, code: str) -> str:
    """Return ``email`` after checking with auth that it is user ``user_id``'s.

    Raises:
        ApiError: 400 ``code`` without an email; 404 ``not_found`` when no user has
            both that id and that email; auth's own refusal as it is.
    """
    if not isinstance(email, str) or not email or len(email) > MAX_QUERY_LENGTH:
        raise ApiError(400, code, "Name the user by their email too: it must match the user's id.")
    params = urlencode({"q": email, "limit": MAX_PAGE, "offset": 0})
    answer = services().auth.forward("GET", f"/users?{params}", _caller())
    if answer.status != 200:
        raise ApiError(answer.status, *_auth_error(answer))
    for user in _auth_json(answer).get("users") or []:
        if user.get("id") == user_id and user.get("email", "").lower() == email.lower():
            return user["email"]
    raise ApiError(404, "not_found", f"No user {user_id} with the email {email}.")


def _auth_error(answer: AuthAnswer) -> tuple[str, str]:
    body = _auth_json(answer) or {}
    return body.get("error", "auth_error"), body.get("message", "The auth service refused.")
