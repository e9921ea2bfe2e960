"""The auth service's HTTP API: login, tokens, sessions, API keys, revocations, users."""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

from flask import Blueprint, Response, jsonify, request

from auth_service import accounts, api_keys, db
from auth_service.callers import (
    BEARER_CHALLENGE,
    REALM,
    Session,
    current_session,
    validated_identity,
)
from auth_service.config import current_config
from auth_service.credentials import (
    InvalidField,
    MalformedCredentials,
    MissingCredentials,
    normalize_email,
    parse_basic_auth,
    plausible_login,
)
from auth_service.throttle import get_throttle
from auth_service.tokens import IssuedToken, get_signer
from common.http.errors import ApiError

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

BASIC_CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}"'}
NEW_USER_FIELDS = frozenset({"email", "password", "admin"})
PASSWORD_FIELDS = frozenset({"current_password", "new_password"})
NEW_KEY_FIELDS = frozenset({"name", "scopes", "expires_in_days"})
REVOCATIONS_PER_PAGE = 1000


def _client_address() -> str:
    # ProxyFix (TRUSTED_PROXIES) has already put the real client here.
    return request.remote_addr or "unknown"


def _invalid_credentials() -> ApiError:
    # One answer for an unknown address and a wrong password alike.
    return ApiError(401, "invalid_credentials", "Invalid email or password.", BASIC_CHALLENGE)


def _token_response(issued: IssuedToken) -> Response:
    response = jsonify(
        token=issued.token,
        token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret  # nosec B106
        expires_in=issued.expires_in,
    )
    # RFC 6749 §5.1: responses carrying tokens must not be cached.
    response.headers["Cache-Control"] = "no-store"
    return response


def json_object(allowed: frozenset[str]) -> dict[str, Any]:
    """Return the request's JSON object body, refusing other bodies and unknown fields.

    Raises:
        ApiError: 400 ``invalid_json`` or ``invalid_request``.
    """
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, "invalid_request", f"Unknown fields: {', '.join(unknown)}.")
    return body


@bp.post("/login")
def login() -> Response:
    """Exchange HTTP Basic email:password for a signed access token."""
    try:
        email, password = parse_basic_auth(request.headers.get("Authorization"))
    except MissingCredentials as exc:
        raise ApiError(401, "missing_credentials", str(exc), BASIC_CHALLENGE) from None
    except MalformedCredentials as exc:
        raise ApiError(400, "malformed_credentials", str(exc)) from None
    throttle = get_throttle()
    throttle.hit_client(_client_address())
    email = normalize_email(email)
    if not plausible_login(email, password):
        # No stored account can match, so there is nothing to hash.
        raise _invalid_credentials()
    throttle.check_account(email)
    user = accounts.authenticate(email, password)
    if user is None:
        throttle.record_failure(email)
        log.info("failed login for %r from %s", email, _client_address())
        raise _invalid_credentials()
    log.info("user %s logged in from %s", user.id, _client_address())
    return _token_response(accounts.issue_token(user))


@bp.route("/validate", methods=["GET", "POST"])
def validate() -> Response:
    """Return the claims of a valid, unrevoked token, or the identity of a live API key."""
    return jsonify(validated_identity())


@bp.post("/logout")
def logout() -> tuple[str, int]:
    """End the caller's session: revoke the token it was made with."""
    session = current_session()
    accounts.log_out(session.claims)
    log.info("user %s logged out", session.user.id)
    return "", 204


@bp.post("/password")
def change_password() -> Response:
    """Change the caller's password, ending every session, and answer a new token."""
    session = current_session()
    body = json_object(PASSWORD_FIELDS)
    throttle = get_throttle()
    throttle.hit_client(_client_address(), scope="password")
    # A stolen session must not become a password oracle: count failures as logins do.
    throttle.check_account(session.user.email)
    try:
        user = accounts.change_password(
            session.user, body.get("current_password"), body.get("new_password")
        )
    except accounts.WrongPassword as exc:
        throttle.record_failure(session.user.email)
        raise ApiError(401, "invalid_credentials", str(exc), BEARER_CHALLENGE) from None
    except InvalidField as exc:
        raise ApiError(400, "invalid_password", f"new {exc}") from None
    except db.UnknownUser:
        raise ApiError(401, "invalid_token", accounts.SESSION_ENDED, BEARER_CHALLENGE) from None
    log.info("user %s changed its password; its other sessions were revoked", user.id)
    return _token_response(accounts.issue_token(user))


@bp.delete("/me")
def delete_me() -> tuple[str, int]:
    """Delete the caller's account and its API keys, ending every session."""
    session = current_session()
    accounts.delete_user(session.user.id)
    log.info("user %s deleted its account", session.user.id)
    return "", 204


@bp.get("/revocations")
def revocations() -> Response:
    """List unexpired revocations after a given id, oldest first: what verifiers must refuse."""
    after = request.args.get("after", "0")
    if not after.isascii() or not after.isdigit() or len(after) > 19:
        raise ApiError(400, "invalid_after", "after must be a revocation id (0 or more).")
    entries = db.revocations_after(int(after), limit=REVOCATIONS_PER_PAGE)
    return jsonify(
        revocations=[
            {"id": e.id, "kind": e.kind, "subject": e.subject, "min_version": e.min_version}
            for e in entries
        ],
        next=entries[-1].id if entries else int(after),
    )


@bp.post("/api-keys")
def create_api_key() -> tuple[Response, int]:
    """Create an API key for the caller; its text is in this answer and nowhere else."""
    session = current_session()
    body = json_object(NEW_KEY_FIELDS)
    try:
        key, text = api_keys.create(session.user, body)
    except api_keys.InvalidKeyRequest as exc:
        raise ApiError(400, exc.code, str(exc)) from None
    except db.UnknownUser:
        raise ApiError(401, "invalid_token", accounts.SESSION_ENDED, BEARER_CHALLENGE) from None
    log.info("user %s created API key %s", session.user.id, key.id)
    shown = api_keys.view(key)
    del shown["prefix"]
    response = jsonify({**shown, "key": text})
    response.headers["Cache-Control"] = "no-store"
    return response, 201


@bp.get("/api-keys")
def list_api_keys() -> Response:
    """List the caller's live API keys, newest first, without their secrets."""
    session = current_session()
    return jsonify(keys=[api_keys.view(key) for key in db.list_api_keys(session.user.id)])


@bp.delete("/api-keys/<key_id>")
def revoke_api_key(key_id: str) -> tuple[str, int]:
    """Revoke one of the caller's API keys."""
    session = current_session()
    if not db.revoke_api_key(session.user.id, key_id):
        raise ApiError(404, "not_found", "You have no live API key with that id.")
    log.info("user %s revoked API key %s", session.user.id, key_id)
    return "", 204


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    """Publish the public key that verifies this service's tokens."""
    response = jsonify(get_signer().jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _not_allowed(caller: Session | None, message: str) -> ApiError:
    # 401 asks the anonymous to log in; 403 tells a logged-in user no.
    if caller is None:
        return ApiError(401, "authentication_required", message, BEARER_CHALLENGE)
    return ApiError(403, "forbidden", message)


def _new_user_request() -> dict[str, Any]:
    body = json_object(NEW_USER_FIELDS)
    if not isinstance(body.get("admin", False), bool):
        raise ApiError(400, "invalid_admin", "admin must be true or false.")
    return body


@bp.post("/users")
def create_user() -> tuple[Response, int]:
    """Create a user: admins may create anyone; others only when registration is open."""
    caller = current_session() if "Authorization" in request.headers else None
    caller_is_admin = caller is not None and caller.user.is_admin
    if not caller_is_admin and not current_config().allow_registration:
        raise _not_allowed(caller, "Creating users needs an admin token.")
    body = _new_user_request()
    wants_admin = body.get("admin", False)
    if wants_admin and not caller_is_admin:
        raise _not_allowed(caller, "Creating admins needs an admin token.")
    if not caller_is_admin:
        # Open registration costs a hash per request; bound it like logins.
        get_throttle().hit_client(_client_address(), scope="register")
    try:
        user = accounts.create_user(body.get("email"), body.get("password"), is_admin=wants_admin)
    except InvalidField as exc:
        raise ApiError(400, f"invalid_{exc.field}", str(exc)) from None
    except db.UserExists:
        raise ApiError(409, "user_exists", "A user with that email already exists.") from None
    log.info("user %s created by %s", user.id, caller.user.id if caller else "registration")
    created = jsonify(
        id=user.id,
        email=user.email,
        admin=user.is_admin,
        created_at=user.created_at.replace(tzinfo=UTC).isoformat(),
    )
    return created, 201
