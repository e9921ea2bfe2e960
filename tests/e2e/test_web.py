"""The web page at ``/``, driven in Debian's Chromium by Playwright against the real stack.

The browser is the machine's own (``/usr/bin/chromium``, launched in tests/e2e/conftest.py),
never one Playwright downloads. A missing browser or Playwright skips these tests locally
and fails them under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.media import audio_stream, make_video, probe_duration
from tests.support.quotas import account, active_jobs_filled
from video2mp3 import soundtrack

try:
    from playwright.sync_api import Browser, CDPSession, Page, expect
except ImportError:  # pragma: no cover - the browser fixture (tests/e2e/conftest.py) says so
    Browser = CDPSession = Page = expect = None

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CONVERSION_TIMEOUT_MS = 60_000
# What an upload should take under the emulated uplink, so its progress can be watched.
UPLOAD_SECONDS = 1.5
BINARY_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
_SIZE = rf"([0-9.]+) ({'|'.join(BINARY_UNITS)})"
STORAGE = re.compile(rf"Storage {_SIZE} of {_SIZE}")

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def new_tab(browser: Browser, base_url: str, **context_options) -> Iterator[Page]:
    """Open a tab in a browser profile of its own; fail on script errors and CSP violations.

    ``context_options`` go to ``Browser.new_context``: a ``storage_state`` gives the
    profile another one's cookies and localStorage, as a browser restarted keeps them.
    """
    context = browser.new_context(
        base_url=base_url,
        viewport={"width": 1100, "height": 900},
        accept_downloads=True,
        **context_options,
    )
    context.set_default_timeout(15_000)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    tab.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    try:
        yield tab
    finally:
        context.close()
    assert not problems, "\n".join(problems)


@pytest.fixture
def page(browser, system) -> Iterator[Page]:
    """Open a fresh browser profile on the gateway."""
    with new_tab(browser, system.gateway) as tab:
        yield tab


def log_in(page: Page, email: str, password: str) -> None:
    page.goto("/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def download_from(row, button: str, directory: Path) -> Path:
    """Click a job row's download button; return the file saved under the browser's name."""
    with row.page.expect_download() as started:
        row.get_by_role("button", name=button).click()
    download = started.value
    saved = directory / download.suggested_filename
    download.save_as(saved)
    return saved


def job_row(page: Page, filename: str):
    return page.locator("li.job").filter(has=page.locator(".job-name", has_text=filename))


def api_jobs(system, user) -> list[dict]:
    response = requests.get(f"{system.gateway}/jobs", headers=user.headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["jobs"]


def storage_shown(page: Page) -> tuple[float, float]:
    """Return the stored bytes and the storage quota the usage line shows, as it rounds them."""
    text = page.locator("#usage").inner_text()
    match = STORAGE.search(text)
    assert match, text
    used, used_unit, quota, quota_unit = match.groups()
    return float(used) * BINARY_UNITS[used_unit], float(quota) * BINARY_UNITS[quota_unit]


def assert_about(shown: float, exact: int) -> None:
    """Assert that a figure the page rounded to two or three digits stands for ``exact``."""
    assert abs(shown - exact) <= max(0.05 * exact, 1), (shown, exact)


def save_screenshot(page: Page, tmp_path: Path) -> Path:
    """Save a full-page screenshot in the test's folder and in test-artifacts/."""
    shot = tmp_path / "web-page.png"
    page.screenshot(path=shot, full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "web-page.png")
    return shot


def throttle_uplink(
    page: Page, bytes_per_second: float, cdp: CDPSession | None = None
) -> CDPSession:
    """Make the browser's uploads as slow as a modest uplink, through the DevTools protocol.

    Return the DevTools session that holds the setting; given it back with -1 bytes a
    second, lift the limit.
    """
    if cdp is None:
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_second,
        },
    )
    return cdp


def test_a_new_user_converts_a_video_in_the_browser(system, user, page, tmp_path):
    source = make_video(tmp_path / "holiday clip.mp4", seconds=4, size="640x480")
    silent = make_video(tmp_path / "silent film.mp4", seconds=2, audio_codec=None)

    log_in(page, user.email, user.password)
    expect(page.locator("#session-email")).to_have_text(user.email)
    expect(page.locator("#session-expiry")).to_contain_text("session ends at")
    expect(page.get_by_text("Nothing here yet")).to_be_visible()
    quotas = account(system, user)["quotas"]
    usage = page.locator("#usage")
    expect(usage).to_contain_text("Storage 0 bytes of ")
    expect(usage).to_contain_text(f"0 of {quotas['active_jobs']} jobs running")
    assert_about(storage_shown(page)[1], quotas["stored_bytes"])

    page.get_by_label("Channels").select_option(label="Mono")
    page.get_by_label("Quality").select_option(label="128 kbit/s")
    page.get_by_label("Artist").fill("The Testers")
    page.locator("#file-input").set_input_files(source)
    expect(page.locator("#file-name")).to_contain_text("holiday clip.mp4")

    # The page sends the video's sound alone, as the CLI's copy of it is (the same packets).
    with soundtrack.extracted(source, {}) as track:
        throttle_uplink(page, track.size / UPLOAD_SECONDS)
    page.get_by_role("button", name="Upload and convert").click()
    # The bar moves with the bytes sent (the tus PATCH's upload progress), not in one jump.
    page.wait_for_function(
        "() => { const bar = document.getElementById('upload-bar');"
        " return bar.checkVisibility() && bar.value > 0 && bar.value < 100; }",
        polling="raf",
    )
    expect(page.locator("#upload-detail")).to_contain_text("of")
    expect(page.locator("#upload-label")).to_have_text("Uploaded holiday clip.mp4")
    expect(page.locator("#upload-bar")).to_have_js_property("value", 100)
    expect(page.locator("#notice")).to_contain_text("Uploaded holiday clip.mp4 (only its sound:")

    row = job_row(page, "holiday clip.mp4")
    expect(row).to_have_attribute("data-status", "done", timeout=CONVERSION_TIMEOUT_MS)
    expect(row.locator(".badge")).to_have_text("Done")
    expect(row.locator(".job-meta")).to_contain_text("128 kbit/s · mono")
    expect(page.locator("#notice")).to_contain_text("ready to download")
    # The finished job changed the list, so the usage line was fetched again: the video
    # and its MP3 are stored, and nothing runs any more.
    after = account(system, user)["usage"]
    [job] = api_jobs(system, user)
    assert job["size"] < source.stat().st_size / 2
    assert after["stored_bytes"] > job["size"]
    assert after["active_jobs"] == 0
    expect(usage).not_to_contain_text("Storage 0 bytes")
    expect(usage).to_contain_text(f"0 of {quotas['active_jobs']} jobs running")
    stored, quota = storage_shown(page)
    assert_about(stored, after["stored_bytes"])
    assert_about(quota, quotas["stored_bytes"])

    mp3 = download_from(row, "Download the MP3 of holiday clip.mp4", tmp_path / "downloaded")
    assert mp3.name == "holiday clip.mp3"
    assert abs(probe_duration(mp3) - probe_duration(source)) <= 0.1
    assert "mono" in audio_stream(mp3)

    # A file the converter cannot use fails with a reason the page shows.
    page.locator("#file-input").set_input_files(silent)
    page.get_by_role("button", name="Upload and convert").click()
    failed = job_row(page, "silent film.mp4")
    expect(failed).to_have_attribute("data-status", "failed", timeout=CONVERSION_TIMEOUT_MS)
    [job] = [job for job in api_jobs(system, user) if job["filename"] == "silent film.mp4"]
    assert job["error"]
    expect(failed.locator(".job-error")).to_have_text(job["error"])
    expect(failed.get_by_role("button", name=re.compile("^Download"))).to_be_hidden()
    expect(page.locator("#upload-progress")).to_be_hidden()

    shot = save_screenshot(page, tmp_path)
    assert shot.stat().st_size > 10_000

    # Delete asks for a second click, then the job is gone from the page and the API.
    delete = failed.get_by_role("button", name="Delete silent film.mp4")
    delete.click()
    expect(failed.get_by_role("button", name="Confirm: delete silent film.mp4")).to_be_visible()
    failed.get_by_role("button", name="Confirm: delete silent film.mp4").click()
    expect(failed).to_have_count(0)
    assert [job["filename"] for job in api_jobs(system, user)] == ["holiday clip.mp4"]


def test_an_upload_past_a_quota_shows_the_servers_message_and_when_to_retry(
    system, user, page, tmp_path
):
    clip = make_video(tmp_path / "one too many.mp4", seconds=1)
    limit = account(system, user)["quotas"]["active_jobs"]
    with active_jobs_filled(system, user) as waiting:
        answer = requests.post(
            f"{system.gateway}/upload",
            headers=user.headers,
            files={"file": (clip.name, clip.read_bytes())},
            timeout=10,
        )
        assert answer.status_code == 429, answer.text
        assert answer.json()["quota"] == "active_jobs"
        assert answer.headers["Retry-After"].isdigit()

        log_in(page, user.email, user.password)
        usage = page.locator("#usage")
        expect(usage).to_contain_text(f"{limit} of {limit} jobs running")
        expect(usage.locator('[data-state="full"]')).to_have_text(
            f"{limit} of {limit} jobs running"
        )
        page.locator("#file-input").set_input_files(clip)
        page.get_by_role("button", name="Upload and convert").click()

        message = page.locator("#message")
        expect(message).to_contain_text(answer.json()["message"].rstrip("."))
        expect(message).to_contain_text(re.compile(r"Try again (in \d+ (s|min)|at \S+|now)\."))
        expect(job_row(page, clip.name)).to_have_count(0)

        # The queued jobs go away: the page, still polling them, sees its list change
        # and fetches the usage again.
        system.videos["jobs"].delete_many({"_id": {"$in": waiting}})
        expect(page.get_by_text("Nothing here yet")).to_be_visible()
        expect(usage).to_contain_text(f"0 of {limit} jobs running")
        expect(usage.locator('[data-state="full"]')).to_have_count(0)
    assert api_jobs(system, user) == []


def test_a_wrong_password_shows_the_server_message_and_no_browser_dialog(system, user, page):
    # Chromium asks the DevTools client for credentials exactly where it would
    # otherwise show its own Basic-auth dialog; record any such request.
    cdp = page.context.new_cdp_session(page)
    prompts = []

    def on_auth_required(event):
        prompts.append(event["request"]["url"])
        cdp.send(
            "Fetch.continueWithAuth",
            {"requestId": event["requestId"], "authChallengeResponse": {"response": "CancelAuth"}},
        )

    cdp.on("Fetch.authRequired", on_auth_required)
    cdp.on(
        "Fetch.requestPaused",
        lambda e: cdp.send("Fetch.continueRequest", {"requestId": e["requestId"]}),
    )
    cdp.send("Fetch.enable", {"handleAuthRequests": True, "patterns": [{"urlPattern": "*/login"}]})
    answer = requests.post(f"{system.gateway}/login", auth=(user.email, "wrong"), timeout=10)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")

    log_in(page, user.email, "wrong")

    expect(page.locator("#message")).to_contain_text(answer.json()["message"])
    expect(page.locator("#login-view")).to_be_visible()
    assert prompts == []


def test_a_file_that_is_no_video_shows_the_server_message(system, user, page):
    text = b"These are my notes, not a video.\n" * 20
    answer = requests.post(
        f"{system.gateway}/upload",
        headers=user.headers,
        files={"file": ("notes.txt", text)},
        timeout=10,
    )
    assert answer.status_code == 415

    log_in(page, user.email, user.password)
    # Dropped onto the zone, as a user drags a file in from the desktop.
    transfer = page.evaluate_handle(
        """([name, text]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([text], name, {type: "text/plain"}));
            return transfer;
        }""",
        ["notes.txt", text.decode()],
    )
    page.locator("#drop-zone").dispatch_event("drop", {"dataTransfer": transfer})
    expect(page.locator("#file-name")).to_contain_text("notes.txt")
    page.get_by_role("button", name="Upload and convert").click()

    expect(page.locator("#message")).to_contain_text(answer.json()["message"])
    expect(page.get_by_text("Nothing here yet")).to_be_visible()
    assert api_jobs(system, user) == []


def test_an_invalid_option_is_named_on_its_field(system, user, page, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", seconds=1)
    log_in(page, user.email, user.password)
    page.get_by_label("Start at").fill("0:05")
    page.get_by_label("End at").fill("2")
    page.locator("#file-input").set_input_files(clip)
    page.get_by_role("button", name="Upload and convert").click()

    expect(page.locator("#message")).to_contain_text("invalid option 'end'")
    expect(page.get_by_label("End at")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("End at")).to_be_focused()
    expect(page.get_by_label("Start at")).not_to_have_attribute("aria-invalid", "true")
    assert api_jobs(system, user) == []


def test_the_session_survives_a_reload_and_ends_at_log_out(system, user, page):
    log_in(page, user.email, user.password)
    expect(page.locator("#session-email")).to_have_text(user.email)
    stored = page.evaluate("() => JSON.parse(sessionStorage.getItem('video2mp3.session'))")
    assert stored["email"] == user.email
    assert stored["token"].count(".") == 2

    page.reload()
    expect(page.locator("#session-email")).to_have_text(user.email)
    expect(page.locator("#app-view")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#login-view")).to_be_visible()
    expect(page.locator("#app-view")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.getItem('video2mp3.session')") is None


def test_an_expired_session_returns_to_the_login_form(system, user, page):
    log_in(page, user.email, user.password)
    expect(page.locator("#app-view")).to_be_visible()
    # A token the gateway no longer accepts: the next API call answers 401.
    page.evaluate(
        """() => {
            const saved = JSON.parse(sessionStorage.getItem('video2mp3.session'));
            saved.token = saved.token.slice(0, -4) + 'AAAA';
            sessionStorage.setItem('video2mp3.session', JSON.stringify(saved));
        }"""
    )
    page.reload()
    expect(page.locator("#login-view")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("Log in again")


# ---- the HTTP side of the page, without a browser ----


def test_the_page_is_served_with_security_headers(system):
    response = requests.get(f"{system.gateway}/", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["img-src"] == "'self' data:"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-cache"

    again = requests.get(
        f"{system.gateway}/", headers={"If-None-Match": response.headers["ETag"]}, timeout=10
    )
    assert again.status_code == 304


def test_the_page_loads_nothing_from_elsewhere_and_runs_no_inline_script(system):
    html = requests.get(f"{system.gateway}/", timeout=10).text
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", html)
    assert not re.search(r"\sstyle=|\son[a-z]+=", html)
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert len(scripts) == html.count("<script")
    for attributes, body in scripts:
        assert re.search(r'\ssrc="/assets/', attributes), attributes
        assert not body.strip()


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("app.js", "text/javascript"), ("app.css", "text/css"), ("icon.svg", "image/svg+xml")],
)
def test_assets_are_cached_for_good_when_asked_for_by_version(system, name, content_type):
    html = requests.get(f"{system.gateway}/", timeout=10).text
    match = re.search(rf'"(/assets/{re.escape(name)}\?v=[0-9a-f]+)"', html)
    assert match, f"the page does not name a versioned {name}"

    versioned = requests.get(f"{system.gateway}{match.group(1)}", timeout=10)
    assert versioned.status_code == 200
    assert versioned.headers["Content-Type"].split(";")[0] == content_type
    assert versioned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert versioned.headers["X-Content-Type-Options"] == "nosniff"

    plain = requests.get(f"{system.gateway}/assets/{name}", timeout=10)
    assert plain.headers["Cache-Control"] == "no-cache"
    assert plain.content == versioned.content
    revalidated = requests.get(
        f"{system.gateway}/assets/{name}",
        headers={"If-None-Match": plain.headers["ETag"]},
        timeout=10,
    )
    assert revalidated.status_code == 304


@pytest.mark.parametrize("name", ["index.html", "nope.js", "..%2Fweb.py"])
def test_only_the_pages_assets_are_served(system, name):
    response = requests.get(f"{system.gateway}/assets/{name}", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
