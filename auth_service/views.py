"""The auth service's HTTP API: login, token validation, keys, health, users."""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

from flask import Blueprint, Response, jsonify, request

from auth_service import accounts, db
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
from auth_service.tokens import get_signer, get_verifier
from common.http.errors import ApiError
from common.tokens import Claims, InvalidToken, bearer_token

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

REALM = "video2mp3"
BASIC_CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}"'}
BEARER_CHALLENGE = {"WWW-Authenticate": f'Bearer realm="{REALM}"'}
NEW_USER_FIELDS = frozenset({"email", "password", "admin"})


def _client_address() -> str:
    # ProxyFix (TRUSTED_PROXIES) has already put the real client here.
    return request.remote_addr or "unknown"


def _invalid_credentials() -> ApiError:
    # One answer for an unknown address and a wrong password alike.
    return ApiError(401, "invalid_credentials", "Invalid email or password.", BASIC_CHALLENGE)


def _bearer_claims() -> Claims:
    try:
        return get_verifier().verify(bearer_token(request.headers.get("Authorization")))
    except InvalidToken as exc:
        raise ApiError(401, "invalid_token", str(exc), BEARER_CHALLENGE) from None


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
    issued = get_signer().issue(user.email, admin=user.is_admin)
    log.info("user %s logged in from %s", user.id, _client_address())
    response = jsonify(
        token=issued.token,
        token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret  # nosec B106
        expires_in=issued.expires_in,
    )
    # RFC 6749 §5.1: responses carrying tokens must not be cached.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/validate", methods=["GET", "POST"])
def validate() -> Response:
    """Return the claims of the bearer token, if it is valid."""
    return jsonify(dict(_bearer_claims().payload))


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    """Publish the public key that verifies this service's tokens."""
    response = jsonify(get_signer().jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _not_allowed(caller: Claims | None, message: str) -> ApiError:
    # 401 asks the anonymous to log in; 403 tells a logged-in user no.
    if caller is None:
        return ApiError(401, "authentication_required", message, BEARER_CHALLENGE)
    return ApiError(403, "forbidden", message)


def _new_user_request() -> dict[str, Any]:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
    unknown = sorted(set(body) - NEW_USER_FIELDS)
    if unknown:
        raise ApiError(400, "invalid_request", f"Unknown fields: {', '.join(unknown)}.")
    if not isinstance(body.get("admin", False), bool):
        raise ApiError(400, "invalid_admin", "admin must be true or false.")
    return body


@bp.post("/users")
def create_user() -> tuple[Response, int]:
    """Create a user: admins may create anyone; others only when registration is open."""
    caller = _bearer_claims() if "Authorization" in request.headers else None
    caller_is_admin = caller is not None and caller.admin
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
    log.info("user %s created by %s", user.id, caller.subject if caller else "registration")
    created = jsonify(
        id=user.id,
        email=user.email,
        admin=user.is_admin,
        created_at=user.created_at.replace(tzinfo=UTC).isoformat(),
    )
    return created, 201
