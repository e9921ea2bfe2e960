"""Single sign-on in Chromium: the page, the gateway, auth and a real OpenID provider.

The provider is panva's certified oidc-provider (tests/support/oidc/), run under Node
on a loopback port; the stack is one of its own, started with ``OIDC_*`` settings
naming it and allowing only addresses at ``sso.test``. A user goes the way a person
does: clicks "Log in with …", signs in at the provider's page, lands back on ours
logged in, and uploads with the token the page was handed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from devstack.servers import free_port
from tests.e2e.test_web import new_tab
from tests.support.media import make_video
from tests.support.oidc_provider import running_provider
from tests.support.system import System

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:  # pragma: no cover - the browser fixture (tests/e2e/conftest.py) says so
    Browser = Page = expect = None

pytestmark = pytest.mark.slow

ALLOWED_DOMAIN = "sso.test"
PROVIDER_NAME = "Test Identity"


@dataclass(frozen=True)
class SSOStack:
    """A running system whose auth service signs users on at the test provider."""

    system: System
    issuer: str


@pytest.fixture(scope="module")
def sso(start_system, tmp_path_factory) -> Iterator[SSOStack]:
    """Start the provider and a stack configured to use it."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    client_secret = uuid.uuid4().hex
    settings = {
        "OIDC_ISSUER": issuer,
        "OIDC_CLIENT_ID": "video2mp3",
        "OIDC_CLIENT_SECRET": client_secret,
        "OIDC_ALLOWED_DOMAINS": ALLOWED_DOMAIN,
        "OIDC_PROVIDER_NAME": PROVIDER_NAME,
    }
    with start_system("sso", settings) as system:
        redirect_uri = f"{system.env['PUBLIC_URL']}/login/oidc/callback"
        log_path = tmp_path_factory.mktemp("oidc") / "provider.log"
        with running_provider(
            redirect_uri, log_path, port=port, client_secret=client_secret
        ) as provider:
            assert provider.issuer == issuer
            yield SSOStack(system, issuer)


@pytest.fixture
def page(browser: Browser, sso: SSOStack) -> Iterator[Page]:
    """Open a fresh browser profile on the SSO stack's gateway."""
    with new_tab(browser, sso.system.gateway) as tab:
        yield tab


def sign_on(page: Page, email: str) -> None:
    """Click the page's single sign-on button and sign in at the provider as ``email``."""
    page.goto("/")
    page.get_by_role("link", name=f"Log in with {PROVIDER_NAME}").click()
    # The provider's own login page (oidc-provider's development interactions).
    page.locator("input[name=login]").fill(email)
    page.locator("input[name=password]").fill("any password")
    page.locator("button[type=submit]").click()


def test_a_user_signs_on_and_uploads(page: Page, sso: SSOStack, tmp_path) -> None:
    email = f"sso-{uuid.uuid4().hex[:8]}@{ALLOWED_DOMAIN}"
    sign_on(page, email)
    expect(page.locator("#session-email")).to_have_text(email)
    # The token came in the fragment, and the fragment is gone from the address bar.
    assert page.url.rstrip("/") == sso.system.gateway
    session = page.evaluate("JSON.parse(sessionStorage.getItem('video2mp3.session'))")
    assert session["email"] == email

    clip = make_video(tmp_path / "sso clip.mp4", seconds=1)
    response = requests.post(
        f"{sso.system.gateway}/upload",
        headers={"Authorization": f"Bearer {session['token']}"},
        files={"file": (clip.name, clip.read_bytes(), "video/mp4")},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    me = requests.get(
        f"{sso.system.gateway}/me",
        headers={"Authorization": f"Bearer {session['token']}"},
        timeout=30,
    )
    assert me.json()["email"] == email


def test_a_second_sign_on_finds_the_same_user(browser: Browser, sso: SSOStack) -> None:
    email = f"again-{uuid.uuid4().hex[:8]}@{ALLOWED_DOMAIN}"
    for _ in range(2):
        with new_tab(browser, sso.system.gateway) as tab:
            sign_on(tab, email)
            expect(tab.locator("#session-email")).to_have_text(email)
    users = requests.get(
        f"{sso.system.auth}/users",
        params={"q": email},
        headers={"Authorization": f"Bearer {sso.system.admin_token}"},
        timeout=30,
    )
    assert users.status_code == 200, users.text
    assert [u["email"] for u in users.json()["users"]] == [email]


def test_a_disallowed_domain_lands_with_a_clear_error(page: Page, sso: SSOStack) -> None:
    email = f"outsider-{uuid.uuid4().hex[:8]}@elsewhere.test"
    sign_on(page, email)
    expect(page.locator("#message")).to_contain_text("domain may not log in here")
    expect(page.locator("#login-view")).to_be_visible()
    assert "login_error" not in page.url
    users = requests.get(
        f"{sso.system.auth}/users",
        params={"q": email},
        headers={"Authorization": f"Bearer {sso.system.admin_token}"},
        timeout=30,
    )
    assert users.json()["users"] == []


def test_the_page_hides_the_button_when_single_sign_on_is_off(browser: Browser, system) -> None:
    assert requests.get(f"{system.gateway}/login/oidc/config", timeout=30).json() == {
        "enabled": False,
        "name": None,
    }
    with new_tab(browser, system.gateway) as tab:
        tab.goto("/")
        expect(tab.get_by_role("button", name="Log in")).to_be_visible()
        expect(tab.locator("#sso")).to_be_hidden()


def test_the_gateway_hands_the_redirect_and_the_state_cookie_to_the_browser(
    sso: SSOStack,
) -> None:
    response = requests.get(f"{sso.system.gateway}/login/oidc", allow_redirects=False, timeout=30)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(f"{sso.issuer}/auth?")
    assert response.headers["Cache-Control"] == "no-store"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("v2m_oidc_state=")
    assert "HttpOnly" in cookie
    assert "Path=/login/oidc" in cookie
    # A callback that no login of this browser started is refused, not followed.
    replay = requests.get(
        f"{sso.system.gateway}/login/oidc/callback",
        params={"code": "stolen", "state": "someone else's"},
        allow_redirects=False,
        timeout=30,
    )
    assert replay.status_code == 302
    assert (
        replay.headers["Location"] == f"{sso.system.env['PUBLIC_URL']}/#login_error=invalid_state"
    )
