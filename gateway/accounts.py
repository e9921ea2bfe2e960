"""Self-service for an account: API keys, logout, password, export and deletion.

API keys, logout and the password change are auth's to do: the gateway forwards
them with the caller's token and hands back auth's answer as it is. They need a
login session (an API key gets 403 ``insufficient_scope``), as does deleting the
account; exporting it is reading jobs (``jobs:read``).

Deleting an account (``DELETE /me``, confirmed by the caller's email) is recorded
first (``common.accounts``), then auth deletes the user (which revokes every token
and key), then the owner's jobs and files go: as many as fit in
``ERASE_TIME_LIMIT``, the rest by the converters' janitor.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request

from common.accounts import AccountDeletions, erase
from common.errors import TransientError
from common.http.errors import ApiError
from common.jobs import JobStore, public_view
from common.mongo import utcnow
from gateway.auth_client import AuthAnswer, Caller
from gateway.identity import JOBS_READ, current_user, requires_scope, requires_session
from gateway.services import services
from gateway.views import attachment

log = logging.getLogger(__name__)

bp = Blueprint("accounts", __name__)

MAX_BODY_BYTES = 16 * 1024  # the largest of these bodies (a key's name, two passwords) is tiny
EXPORT_PAGE_SIZE = 100
# DELETE /me erases for about this long before answering; the janitor does the rest.
ERASE_TIME_LIMIT = 2.0
KEY_ID = re.compile(r"[0-9a-f]{12}")


def _caller() -> Caller:
    return Caller(
        request.headers.get("Authorization"),
        request.remote_addr,
        request.headers.get("X-Request-ID"),
    )


def _answer(answer: AuthAnswer) -> Response:
    return Response(answer.body, status=answer.status, headers=answer.headers)


def _forward(method: str, path: str, *, with_body: bool = False) -> Response:
    """Forward the request to auth as the caller and hand back auth's answer."""
    body = _json_object() if with_body else None
    return _answer(services().auth.forward(method, path, _caller(), json_body=body))


def _read_json() -> Any:
    """Return the request's JSON body (at most ``MAX_BODY_BYTES``), or None if it is none.

    Raises:
        ApiError: 413 for a large body.
    """
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"The request body exceeds {MAX_BODY_BYTES} bytes.")
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _json_object() -> dict[str, Any]:
    """Return the request's JSON object.

    Raises:
        ApiError: 413 for a large body, 400 for one that is not a JSON object.
    """
    body = _read_json()
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "Send a JSON object.")
    return body


@bp.post("/api-keys")
@requires_session
def create_api_key() -> Response:
    """Create an API key with the given name, scopes and lifetime (auth shows it this once)."""
    return _forward("POST", "/api-keys", with_body=True)


@bp.get("/api-keys")
@requires_session
def list_api_keys() -> Response:
    """List the caller's live API keys, newest first."""
    return _forward("GET", "/api-keys")


@bp.delete("/api-keys/<key_id>")
@requires_session
def revoke_api_key(key_id: str) -> Response:
    """Revoke one of the caller's API keys; it stops working within 30 s everywhere."""
    if not KEY_ID.fullmatch(key_id):
        raise ApiError(404, "not_found", "No such API key.")
    return _forward("DELETE", f"/api-keys/{key_id}")


@bp.post("/logout")
@requires_session
def logout() -> Response:
    """End the caller's login session: its token is refused within 30 s everywhere."""
    return _forward("POST", "/logout")


@bp.post("/me/password")
@requires_session
def change_password() -> Response:
    """Change the caller's password, end every other session, and answer a new token."""
    return _forward("POST", "/password", with_body=True)


@bp.get("/me/export")
@requires_scope(JOBS_READ)
def export() -> Response:
    """Stream the caller's account and every job of theirs, newest first, as a JSON file."""
    user = current_user()
    now = utcnow()
    head = {
        "exported_at": now.isoformat().replace("+00:00", "Z"),
        "account": {"email": user.subject, "admin": user.admin},
    }
    lines = _export_lines(head, user.subject, services().jobs)
    response = Response(lines, mimetype="application/json")
    response.headers["Content-Disposition"] = attachment(
        f"video2mp3-export-{now.date().isoformat()}.json"
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _export_lines(head: dict[str, Any], owner: str, jobs: JobStore) -> Iterator[str]:
    """Yield the export's JSON: the head, then the jobs a page at a time (after the request)."""
    yield json.dumps(head)[:-1] + ', "jobs": ['
    position = None
    separator = ""
    while page := jobs.owned_after(owner, position, limit=EXPORT_PAGE_SIZE):
        for job in page:
            yield separator + json.dumps(public_view(job))
            separator = ","
        position = (page[-1]["created_at"], page[-1]["_id"])
    yield "]}"


@bp.delete("/me")
@requires_session
def delete_me() -> tuple[Response, int] | Response:
    """Delete the caller's account with all their jobs and files (confirmed by their email)."""
    user = current_user()
    body = _read_json()
    confirm = body.get("confirm") if isinstance(body, dict) else None
    if not isinstance(confirm, str) or confirm.strip().lower() != user.subject.lower():
        raise ApiError(
            400,
            "confirmation_required",
            'Confirm with your email: {"confirm": "<your email>"}. This cannot be undone.',
        )
    caller = _caller()
    return delete_account(user.subject, lambda: services().auth.forward("DELETE", "/me", caller))


def delete_account(
    owner: str, delete_user: Callable[[], AuthAnswer]
) -> tuple[Response, int] | Response:
    """Record the deletion, have auth delete the user, then erase what fits in the request.

    ``delete_user`` asks auth to delete the user (``DELETE /me``, or the admin's
    ``DELETE /users/<id>``) and returns its answer; any answer but a 2xx is handed
    back as it is, and the record stays ``requested`` with nothing erased.

    Raises:
        TransientError: MongoDB failed, or auth could not be reached or failed (503).
    """
    svc = services()
    deletions = AccountDeletions(svc.storage.client, svc.config.mongo)
    requested_at = deletions.request(owner)
    answer = delete_user()
    if answer.status >= 500:
        raise TransientError(f"auth answered {answer.status} to an account deletion")
    if not 200 <= answer.status < 300:
        return _answer(answer)
    deletions.confirm(owner)
    # Whoever registers the address next starts from the defaults.
    svc.intake.overrides.forget(owner)
    log.info("deleted the account of %s; erasing its jobs", owner)
    remaining = erase(
        owner, requested_at, jobs=svc.jobs, storage=svc.storage, time_limit=ERASE_TIME_LIMIT
    )
    if remaining:
        return jsonify(status="deleting", remaining_jobs=remaining), 202
    deletions.finish(owner, requested_at)
    return jsonify(status="deleted"), 200
