"""Single sign-on through the gateway: the three ``/login/oidc`` routes, forwarded to auth.

Auth is the OpenID relying party; the gateway only passes the browser's requests on
and auth's answers back as they are. Auth answers the sign-on routes with redirects
(to the provider, or to the page with the outcome in the fragment) and a state cookie,
so redirects are handed to the browser, never followed here, and the cookie travels
both ways. While auth cannot be reached, the browser is sent back to the page with
``#login_error=unavailable`` rather than shown a JSON error.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, redirect, request

from common.errors import TransientError
from gateway.auth_client import Caller
from gateway.services import services

log = logging.getLogger(__name__)

bp = Blueprint("sso", __name__)

# Auth's state cookie: the only cookie of the browser's that auth needs to see.
STATE_COOKIE = "v2m_oidc_state"


def _forward(path: str) -> Response:
    """Send this GET to auth's ``path`` with its query and state cookie; return auth's answer.

    Raises:
        TransientError: auth cannot be reached.
    """
    state = request.cookies.get(STATE_COOKIE)
    answer = services().auth.navigate(
        path,
        Caller(None, request.remote_addr, request.headers.get("X-Request-ID")),
        params=list(request.args.items(multi=True)),
        cookies={STATE_COOKIE: state} if state is not None else {},
    )
    response = Response(answer.body, status=answer.status, headers=answer.headers)
    for cookie in answer.cookies:
        response.headers.add("Set-Cookie", cookie)
    return response


def _navigation(path: str) -> Response:
    try:
        return _forward(path)
    except TransientError as exc:
        log.warning("single sign-on through the gateway failed: %s", exc)
        response = redirect(f"{services().config.public_url}/#login_error=unavailable", 302)
        response.headers["Cache-Control"] = "no-store"
        return response


@bp.get("/login/oidc")
def oidc_login() -> Response:
    """Start single sign-on: auth redirects the browser to the OpenID provider."""
    return _navigation("/login/oidc")


@bp.get("/login/oidc/callback")
def oidc_callback() -> Response:
    """Finish single sign-on: auth redirects the browser to the page, logged in or not."""
    return _navigation("/login/oidc/callback")


@bp.get("/login/oidc/config")
def oidc_config() -> Response:
    """Tell the page whether single sign-on is on and the provider's name."""
    return _forward("/login/oidc/config")
