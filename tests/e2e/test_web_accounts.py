"""The page's account panel in Chromium, against the real stack: API keys shown once, listed
without their secret and revoked; a password change that keeps this tab going and ends
the others; the export of the account's jobs; deleting the account; logging out."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator

import pytest
import requests

from tests.e2e.test_web import ARTIFACTS, log_in, new_tab
from tests.support.media import make_video
from tests.support.polling import wait_until
from tests.support.sessions import REVOCATION_SECONDS, wait_until_refused

try:
    from playwright.sync_api import Page, expect
except ImportError:  # pragma: no cover - the browser fixture (tests/e2e/conftest.py) says so
    Page = expect = None

pytestmark = pytest.mark.slow

KEY = re.compile(r"v2m_(?P<id>[0-9a-f]{12})_[A-Za-z0-9_-]{43}")
SESSION_ENDED = "Your session has ended"


@pytest.fixture
def page(browser, system) -> Iterator[Page]:
    """Open a fresh browser profile on the gateway."""
    with new_tab(browser, system.gateway) as tab:
        yield tab


def open_account(page: Page, user) -> None:
    log_in(page, user.email, user.password)
    expect(page.locator("#session-email")).to_have_text(user.email)
    page.get_by_role("button", name="Account", exact=True).click()
    expect(page.locator("#account")).to_be_visible()
    expect(page.locator("#account-email")).to_have_text(user.email)


def session_token(page: Page) -> str:
    return page.evaluate("() => JSON.parse(sessionStorage.getItem('video2mp3.session')).token")


def upload(system, user, path) -> str:
    with path.open("rb") as video:
        answer = requests.post(
            f"{system.gateway}/upload",
            headers=user.headers,
            files={"file": (path.name, video)},
            timeout=60,
        )
    assert answer.status_code in (200, 201, 202), answer.text
    return answer.json()["job_id"]


def test_an_api_key_is_shown_once_listed_without_its_secret_and_revoked(
    browser, system, user, tmp_path
):
    permissions = {"permissions": ["clipboard-read", "clipboard-write"]}
    with new_tab(browser, system.gateway, **permissions) as page:
        open_account(page, user)
        expect(page.locator("#keys-empty")).to_have_text("No API keys yet.")

        page.get_by_label("Key name").fill("backup script")
        page.get_by_label("jobs:write").uncheck()
        page.get_by_label("Expires after (days)").fill("30")
        page.get_by_role("button", name="Create key").click()

        secret_box = page.locator("#key-secret")
        expect(secret_box).to_be_visible()
        expect(secret_box).to_contain_text("you will not see it again")
        expect(secret_box).to_contain_text("backup script")
        key = page.locator("#key-secret-value").input_value()
        match = KEY.fullmatch(key)
        assert match, key
        page.get_by_role("button", name="Copy").click()
        expect(page.get_by_role("button", name="Copied")).to_be_visible()
        assert page.evaluate("() => navigator.clipboard.readText()") == key

        # The list shows the key by its prefix, never its secret.
        row = page.locator("tr.key", has_text="backup script")
        expect(row).to_have_count(1)
        expect(row.locator(".key-prefix")).to_have_text(f"v2m_{match['id']}_…")
        expect(row.locator(".key-scope-list")).to_have_text("jobs:read")
        expect(row).to_contain_text("never")  # not used yet
        assert key.split("_")[-1] not in row.inner_text()
        # The panel fits the window: nothing in it widens the page.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=tmp_path / "web-accounts.png", full_page=True)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "web-accounts.png", ARTIFACTS / "web-accounts.png")

        # It works for what its scope allows, and not for more.
        as_key = {"Authorization": f"Bearer {key}"}
        assert requests.get(f"{system.gateway}/jobs", headers=as_key, timeout=10).ok
        wrote = requests.delete(f"{system.gateway}/jobs/{'0' * 32}", headers=as_key, timeout=10)
        assert wrote.status_code == 403, wrote.text
        assert wrote.json()["error"] == "insufficient_scope"

        page.get_by_role("button", name="Done, hide it").click()
        expect(secret_box).to_be_hidden()
        assert key not in page.content()

        revoke = row.get_by_role("button", name="Revoke the key backup script")
        revoke.click()
        row.get_by_role("button", name="Confirm: revoke the key backup script").click()
        expect(page.locator("#notice")).to_contain_text("Revoked the key backup script")
        expect(page.locator("tr.key")).to_have_count(0)
        expect(page.locator("#keys-empty")).to_be_visible()
        assert wait_until_refused(system, key)["error"] == "invalid_token"


def test_a_password_change_keeps_this_tab_and_ends_the_others(browser, system, user):
    new_password = f"new-{user.password}"
    with (
        new_tab(browser, system.gateway) as page,
        new_tab(browser, system.gateway) as other,
    ):
        log_in(other, user.email, user.password)
        expect(other.locator("#app-view")).to_be_visible()
        open_account(page, user)
        before = session_token(page)

        page.get_by_label("Current", exact=True).fill("not-my-password")
        page.get_by_label("New", exact=True).fill(new_password)
        page.get_by_label("New, again").fill(new_password)
        page.get_by_role("button", name="Change it").click()
        expect(page.locator("#message")).to_contain_text("The current password is wrong.")
        expect(page.locator("#app-view")).to_be_visible()  # a wrong password is no logout

        page.get_by_label("Current", exact=True).fill(user.password)
        page.get_by_label("New, again").fill(new_password + "x")
        page.get_by_role("button", name="Change it").click()
        expect(page.locator("#message")).to_contain_text("differ")

        page.get_by_label("New, again").fill(new_password)
        page.get_by_role("button", name="Change it").click()
        expect(page.locator("#notice")).to_contain_text("Other sessions end within 30 seconds")
        assert session_token(page) != before

        # The other tab's session ends; its next request says so on the login form. Each
        # gateway process learns of it on its own poll: refresh until the one asked knows.
        assert wait_until_refused(system, user.token)["error"] == "token_revoked"

        def sent_back_to_the_login_form() -> bool:
            if other.locator("#login-view").is_visible():
                return True
            other.get_by_role("button", name="Refresh").click()
            return False

        wait_until(sent_back_to_the_login_form, timeout=REVOCATION_SECONDS, interval=1)
        expect(other.locator("#notice")).to_contain_text(SESSION_ENDED)

        # This tab goes on with the token the change answered.
        page.get_by_role("button", name="Refresh").click()
        expect(page.get_by_text("Nothing here yet")).to_be_visible()
        expect(page.locator("#app-view")).to_be_visible()

        # The old password no longer logs in; the new one does.
        log_in(other, user.email, user.password)
        expect(other.locator("#message")).not_to_be_empty()
        expect(other.locator("#login-view")).to_be_visible()
        log_in(other, user.email, new_password)
        expect(other.locator("#session-email")).to_have_text(user.email)


def test_the_export_downloads_the_account_with_its_jobs(page, system, user, tmp_path):
    first = upload(system, user, make_video(tmp_path / "first.mp4", seconds=1))
    second = upload(system, user, make_video(tmp_path / "second.mp4", seconds=1))
    open_account(page, user)

    with page.expect_download() as started:
        page.get_by_role("button", name="Export my data").click()
    download = started.value
    assert re.fullmatch(r"video2mp3-export-\d{4}-\d{2}-\d{2}\.json", download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)

    export = json.loads(saved.read_text())
    assert export["account"]["email"] == user.email
    assert [job["job_id"] for job in export["jobs"]] == [second, first]  # newest first
    assert {job["filename"] for job in export["jobs"]} == {"first.mp4", "second.mp4"}
    expect(page.locator("#notice")).to_contain_text(f"Saved {download.suggested_filename}")


def test_deleting_the_account_returns_to_the_login_form(page, system, user, tmp_path):
    upload(system, user, make_video(tmp_path / "clip.mp4", seconds=1))
    open_account(page, user)
    token = session_token(page)
    delete = page.get_by_role("button", name="Delete my account")
    confirm = page.get_by_label("To confirm, type the address you log in with")

    expect(delete).to_be_disabled()
    confirm.fill("someone-else@e2e.test")
    expect(delete).to_be_disabled()
    confirm.fill(user.email.upper())
    expect(delete).to_be_enabled()
    delete.click()

    expect(page.locator("#login-view")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("Your account is deleted")
    assert page.evaluate("() => sessionStorage.getItem('video2mp3.session')") is None
    refused = requests.post(f"{system.gateway}/login", auth=(user.email, user.password), timeout=30)
    assert refused.status_code == 401
    log_in(page, user.email, user.password)
    expect(page.locator("#message")).not_to_be_empty()
    expect(page.locator("#login-view")).to_be_visible()
    wait_until_refused(system, token)


def test_log_out_ends_the_token_on_the_server(page, system, user):
    log_in(page, user.email, user.password)
    expect(page.locator("#app-view")).to_be_visible()
    token = session_token(page)

    page.get_by_role("button", name="Log out").click()

    expect(page.locator("#login-view")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("You are logged out.")
    assert wait_until_refused(system, token)["error"] == "token_revoked"
    assert requests.get(f"{system.gateway}/jobs", headers=user.headers, timeout=10).ok
