"""Single sign-on routes: leave for the OpenID provider, come back logged in.

The browser's round trip carries no secret of ours: the state, nonce and PKCE
verifier wait in MySQL (one use, ten minutes), and a cookie holding the state ties
the callback to the browser that started the login, so nobody can hand a victim a
callback URL that logs them into someone else's account. Both ends are browser
navigations, so both answer with redirects: to the provider, or to the page with
``#login=<token>`` or ``#login_error=<code>`` in the fragment, which browsers never
send to a server.
"""

from __future__ import annotations

import hmac
import logging
import secrets

from flask import Blueprint, Response, jsonify, redirect, request

from auth_service import accounts, db
from auth_service.config import current_config
from auth_service.oidc import OIDCError, Provider, get_provider, new_attempt
from auth_service.passwords import get_hasher
from auth_service.throttle import get_throttle
from common.errors import TransientError

log = logging.getLogger(__name__)

bp = Blueprint("oidc", __name__)

STATE_COOKIE = "v2m_oidc_state"
STATE_COOKIE_PATH = "/login/oidc"


class _Refused(Exception):
    """The sign-on ends without a login; ``code`` is what the page is told."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@bp.get("/login/oidc/config")
def oidc_config() -> Response:
    """Tell the page whether single sign-on is on, and the provider's name for its button."""
    provider = get_provider()
    return jsonify(enabled=provider is not None, name=provider.name if provider else None)


@bp.get("/login/oidc")
def start() -> Response:
    """Send the browser to the provider to log in."""
    provider = get_provider()
    if provider is None:
        return _to_page("login_error", "sso_disabled")
    get_throttle().hit_client(request.remote_addr or "unknown", scope="oidc")
    attempt = new_attempt()
    try:
        url = provider.authorization_url(attempt)
        db.save_oidc_login(attempt.state, attempt.nonce, attempt.code_verifier)
    except TransientError as exc:
        log.warning("single sign-on cannot start: %s", exc)
        return _to_page("login_error", "unavailable")
    response = _no_store(redirect(url, 302))
    response.set_cookie(
        STATE_COOKIE,
        attempt.state,
        max_age=db.OIDC_LOGIN_MINUTES * 60,
        path=STATE_COOKIE_PATH,
        secure=current_config().oidc.public_url.startswith("https://"),
        httponly=True,
        # Lax: sent on the provider's top-level redirect back to us, not on cross-site posts.
        samesite="Lax",
    )
    return response


@bp.get("/login/oidc/callback")
def callback() -> Response:
    """Finish a sign-on: check everything, find or create the user, hand the page a token."""
    provider = get_provider()
    try:
        if provider is None:
            raise _Refused("sso_disabled")
        token = _finish(provider, _take_attempt())
        response = _to_page("login", token)
    except _Refused as refused:
        response = _to_page("login_error", refused.code)
    except OIDCError as exc:
        log.warning("single sign-on refused (%s): %s", exc.code, exc)
        response = _to_page("login_error", exc.code)
    except TransientError as exc:
        log.warning("single sign-on failed: %s", exc)
        response = _to_page("login_error", "unavailable")
    response.delete_cookie(STATE_COOKIE, path=STATE_COOKIE_PATH)
    return response


def _take_attempt() -> db.OIDCLogin:
    state = request.args.get("state", "")
    cookie = request.cookies.get(STATE_COOKIE, "")
    if not state or not hmac.compare_digest(state.encode(), cookie.encode()):
        log.warning("single sign-on callback whose state is not this browser's")
        raise _Refused("invalid_state")
    attempt = db.take_oidc_login(state)
    if attempt is None:
        log.warning("single sign-on callback with an unknown, used or stale state")
        raise _Refused("invalid_state")
    return attempt


def _finish(provider: Provider, attempt: db.OIDCLogin) -> str:
    error = request.args.get("error")
    if error is not None:
        log.info("the provider ended a single sign-on: %.100s", error)
        raise _Refused("access_denied" if error == "access_denied" else "provider_error")
    # RFC 9207: a provider that names itself must be ours (no mix-up with another).
    issuer = request.args.get("iss")
    if issuer is not None and issuer != provider.metadata().issuer:
        raise _Refused("provider_error")
    code = request.args.get("code")
    if not code:
        raise _Refused("provider_error")
    id_token = provider.exchange_code(code, attempt.code_verifier)
    identity = provider.verify_id_token(id_token, nonce=attempt.nonce)
    user, created = db.find_or_create_user(
        identity.email,
        # Nobody knows this password: the account logs in through the provider only,
        # until someone sets one.
        lambda: get_hasher().hash(secrets.token_urlsafe(32)),
    )
    if created:
        log.info("user %s created by single sign-on", user.id)
    if user.disabled:
        raise _Refused("account_disabled")
    log.info("user %s logged in by single sign-on from %s", user.id, request.remote_addr)
    return accounts.issue_token(user).token


def _to_page(name: str, value: str) -> Response:
    target = f"{current_config().oidc.public_url}/#{name}={value}"
    return _no_store(redirect(target, 302))


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    # The provider's URL and ours carry one-time codes: no Referer leaks them onward.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
