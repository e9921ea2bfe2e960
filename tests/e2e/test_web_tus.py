"""The page uploads with tus (tus-js-client in Chromium) through a proxy the tests can cut.

Every page here is loaded through a ``TcpProxy`` in front of the real gateway, so a test
can drop the line, refuse it for a while, or slow it down, and count the bytes the
browser sent upstream. The files are WAVs of a few MB: the page's chunk is the shipped
50 MB (CHUNK_SIZE in gateway/static/tus-upload.js), so each of these uploads is one
PATCH, as any file below 50 MB is in production; and a WAV is sent whole (the page's
audio-only extraction is for MP4/MOV/M4V), so the bytes stored are the file's.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import gridfs
import pytest
from bson import ObjectId

from devstack.tcp_proxy import TcpProxy
from tests.e2e.conftest import PLAIN_HTTP_HOST
from tests.e2e.test_pipeline import download_mp3
from tests.e2e.test_tus import gateway_proxy  # noqa: F401 - the proxy fixture, used by `line`
from tests.e2e.test_web import (
    CONVERSION_TIMEOUT_MS,
    api_jobs,
    job_row,
    log_in,
    new_tab,
    throttle_uplink,
)
from tests.support.media import audio_stream, describe, make_video, probe_duration
from tests.support.polling import wait_until

try:
    from playwright.sync_api import Page, expect
except ImportError:  # pragma: no cover - the browser fixture (tests/e2e/conftest.py) says so
    Page = expect = None

pytestmark = pytest.mark.slow

CHUNK_SIZE = 50_000_000  # the page's chunk (tus-upload.js)
# What the requests around an upload's body send upstream besides it: request lines and
# headers (a bearer token, Upload-Metadata) of the creation, HEADs, PATCHes and the page's
# own polls of /jobs and /me while it waits. A few kB; a file re-sent would be megabytes.
OVERHEAD = 16 * 1024
# Upstream bytes a second while a test needs the upload to take a few seconds. Slowed in the
# browser (DevTools): slowed in the proxy instead, the browser would fill the kernel's socket
# buffers (megabytes on loopback) at once, and count the whole file as sent.
SLOW_LINE = 1_000_000
KEPT_UPLOADS = "() => Object.keys(localStorage).filter((key) => key.startsWith('tus::'))"


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """A WAV of about 4.2 MB (24 s of stereo 16-bit PCM)."""
    return make_video(tmp_path_factory.mktemp("web-tus") / "song.wav", seconds=24, video=False)


@dataclass
class Line:
    """A tab whose page, scripts and API calls all go through ``proxy`` to the gateway."""

    page: Page
    proxy: TcpProxy
    base_url: str


@pytest.fixture
def line(browser, system, gateway_proxy) -> Iterator[Line]:  # noqa: F811 - the imported fixture
    """Open a tab on the gateway through the proxy."""
    base_url = f"http://127.0.0.1:{gateway_proxy.port}"
    with new_tab(browser, base_url) as tab:
        yield Line(tab, gateway_proxy, base_url)


def tus_record(system, user) -> dict | None:
    return system.videos["tus_uploads"].find_one({"owner": user.email})


def stored_bytes(system, video_fid: ObjectId) -> bytes:
    return gridfs.GridFSBucket(system.videos).open_download_stream(video_fid).read()


def wait_for_offset(system, user, at_least: int) -> dict:
    """Wait until the server holds ``at_least`` bytes of the user's upload; return its record."""
    wait_until(
        lambda: (tus_record(system, user) or {}).get("offset", 0) >= at_least,
        timeout=30,
        describe=lambda: tus_record(system, user),
    )
    return tus_record(system, user)


def wait_until_released(system, user) -> dict:
    """Wait until no request holds the user's upload (the server noticed a line gone)."""
    wait_until(
        lambda: (tus_record(system, user) or {}).get("lock_holder", "held") is None,
        timeout=30,
        describe=lambda: tus_record(system, user),
    )
    return tus_record(system, user)


def choose_and_upload(page, song, *, quality: str | None = None) -> None:
    if quality:
        page.get_by_label("Quality").select_option(label=quality)
    page.locator("#file-input").set_input_files(song)
    page.get_by_role("button", name="Upload and convert").click()


def creation_location(page, song, **choose) -> ObjectId:
    """Upload ``song`` from the page; return the upload's id from the creation's answer."""
    is_creation = lambda response: (  # noqa: E731
        response.request.method == "POST" and response.url.endswith("/files/")
    )
    with page.expect_response(is_creation) as created:
        choose_and_upload(page, song, **choose)
    assert created.value.status == 201
    return ObjectId(created.value.headers["location"].rsplit("/", 1)[1])


def finished_job(system, user, page, filename: str) -> dict:
    """Wait until the page shows the job done; return it as the API does."""
    expect(job_row(page, filename)).to_have_attribute(
        "data-status", "done", timeout=CONVERSION_TIMEOUT_MS
    )
    [job] = [job for job in api_jobs(system, user) if job["filename"] == filename]
    return job


def test_an_upload_from_the_page_becomes_a_job_with_its_options(system, user, line, song, tmp_path):
    page = line.page
    log_in(page, user.email, user.password)
    throttle_uplink(page, SLOW_LINE)
    upload_id = creation_location(page, song, quality="128 kbit/s")

    # Speed and time left, once the line has been measured for a second.
    detail = page.locator("#upload-detail")
    expect(detail).to_have_text(
        re.compile(
            r"^[0-9.]+ MB of 4\.2 MB · [0-9.]+ (KB|MB)/s · (about \d+ s|a few seconds) left$"
        )
    )
    expect(page.locator("#upload-label")).to_have_text("Uploaded song.wav")
    expect(page.locator("#notice")).to_contain_text("Uploaded song.wav. Converting it now.")

    job = finished_job(system, user, page, "song.wav")
    assert job["options"]["bitrate"] == 128
    assert stored_bytes(system, upload_id) == song.read_bytes()
    mp3 = download_mp3(system, user, job["mp3_fid"], tmp_path / "song.mp3")
    assert abs(probe_duration(mp3) - probe_duration(song)) <= 0.1
    # Finished: nothing is kept for resuming.
    assert page.evaluate(KEPT_UPLOADS) == []


def test_a_line_cut_mid_upload_resumes_on_its_own(system, user, line, song):
    """The tus-js-client interoperability test with a cut: the line drops at half the file.

    tus-js-client, as the page runs it, asks the gateway for its offset once the line is
    back and sends the rest: the job finishes and, in all, the browser sent at most the
    file plus one chunk plus the requests' headers upstream.
    """
    page, proxy = line.page, line.proxy
    size = song.stat().st_size
    log_in(page, user.email, user.password)
    proxy.limit_rate(SLOW_LINE)
    before = proxy.bytes_up
    # Half the file, then the line is gone (new connections refused) until accept().
    proxy.cut_after(size // 2, refuse=True)
    upload_id = creation_location(page, song)

    label = page.locator("#upload-label")
    expect(label).to_contain_text("Connection lost: trying again", timeout=30_000)
    kept = wait_until_released(system, user)
    assert size // 3 < kept["offset"] < size  # what arrived before the cut is kept
    proxy.accept()
    proxy.limit_rate(None)

    expect(label).to_have_text("Uploaded song.wav", timeout=60_000)
    sent = proxy.bytes_up - before
    finished_job(system, user, page, "song.wav")
    assert stored_bytes(system, upload_id) == song.read_bytes()
    print(f"cut at half: {sent} bytes sent upstream for {size}; the server kept {kept['offset']}")
    assert sent <= size + min(CHUNK_SIZE, size) + OVERHEAD
    # Tighter here: the gateway kept every byte of the cut request before the line came
    # back, so the offset the page asked for was exact and nothing was sent twice.
    assert sent <= size + OVERHEAD
    assert page.evaluate(KEPT_UPLOADS) == []


@pytest.mark.parametrize("how", ["reload", "browser restart", "reload over plain HTTP"])
def test_an_upload_resumes_after_a_reload_without_resending_what_the_server_has(
    system, user, browser, line, song, how
):
    page, proxy = line.page, line.proxy
    with contextlib.ExitStack() as stack:
        if how == "reload over plain HTTP":
            # As served to another machine over HTTP: no secure context, no crypto.subtle.
            page = stack.enter_context(new_tab(browser, f"http://{PLAIN_HTTP_HOST}:{proxy.port}"))
            how = "reload"
        resume_after(system, user, browser, line, song, page, how, stack)


def resume_after(system, user, browser, line, song, page, how, stack) -> None:
    """Upload ``song`` from ``page``, cut it off by a reload or a restart, and resume it."""
    proxy, size = line.proxy, song.stat().st_size
    log_in(page, user.email, user.password)
    assert page.evaluate("isSecureContext") is (PLAIN_HTTP_HOST not in page.url)
    uplink = throttle_uplink(page, SLOW_LINE)
    upload_id = creation_location(page, song, quality="160 kbit/s")
    wait_for_offset(system, user, size // 3)
    [key] = page.evaluate(KEPT_UPLOADS)
    kept = page.evaluate("(key) => localStorage.getItem(key)", key)
    # Kept for resuming: the upload's URL under a hash, naming neither the user nor the file.
    assert user.email not in key
    assert "song" not in kept
    assert user.email not in kept

    if how == "reload":
        page.reload()
        throttle_uplink(page, -1, uplink)
        tab = page
    else:
        state = page.context.storage_state()
        # The browser quits mid-upload. The line goes first: closing the context lifts
        # the DevTools throttle, and the bytes Chromium holds would rush out before the
        # request is cancelled, so much that the upload might finish.
        proxy.refuse()
        page.context.close()
        proxy.accept()
        tab = stack.enter_context(new_tab(browser, line.base_url, storage_state=state))
        log_in(tab, user.email, user.password)
    expect(tab.locator("#app-view")).to_be_visible()
    had = wait_until_released(system, user)["offset"]
    assert size // 3 <= had < size
    assert tab.evaluate(KEPT_UPLOADS) == [key]

    before = proxy.bytes_up
    choose_and_upload(tab, song, quality="160 kbit/s")  # the same file, the same options
    expect(tab.locator("#upload-label")).to_have_text("Uploaded song.wav")
    sent = proxy.bytes_up - before
    print(f"after a {how}: the server had {had} of {size} bytes; {sent} sent upstream")
    assert size - had <= sent <= size - had + OVERHEAD

    job = finished_job(system, user, tab, "song.wav")
    assert job["options"]["bitrate"] == 160
    assert stored_bytes(system, upload_id) == song.read_bytes()
    assert tab.evaluate(KEPT_UPLOADS) == []
    assert len(api_jobs(system, user)) == 1


def test_a_refused_option_is_named_on_its_field_and_nothing_is_stored(system, user, line, song):
    page = line.page
    log_in(page, user.email, user.password)
    # A value the form does not offer, as a hand-edited page or an old tab would send.
    page.evaluate(
        """() => {
            const select = document.getElementById('opt-encoding');
            select.add(new Option('7 kbit/s', 'bitrate:7'));
        }"""
    )
    choose_and_upload(page, song, quality="7 kbit/s")

    expect(page.locator("#message")).to_contain_text("bitrate")
    expect(page.get_by_label("Quality")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Quality")).to_be_focused()
    expect(page.locator("#upload-progress")).to_be_hidden()
    assert tus_record(system, user) is None
    assert system.videos["fs.files"].count_documents({"metadata.owner": user.email}) == 0
    assert api_jobs(system, user) == []
    assert page.evaluate(KEPT_UPLOADS) == []


def test_cancel_removes_the_upload_from_the_server(system, user, line, song):
    page = line.page
    log_in(page, user.email, user.password)
    throttle_uplink(page, SLOW_LINE)
    upload_id = creation_location(page, song)
    wait_for_offset(system, user, 1)  # some bytes stored

    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#notice")).to_have_text("Upload cancelled.")
    expect(page.locator("#upload-progress")).to_be_hidden()
    wait_until(lambda: tus_record(system, user) is None, timeout=30)
    assert system.videos["fs.chunks"].count_documents({"files_id": upload_id}) == 0
    assert system.videos["fs.files"].count_documents({"_id": upload_id}) == 0
    wait_until(lambda: page.evaluate(KEPT_UPLOADS) == [], timeout=10)
    assert api_jobs(system, user) == []


@pytest.fixture(scope="module")
def phone_clip(tmp_path_factory):
    """An 8 s 720p H.264 + AAC MP4 with its index last, as phones and ffmpeg write it."""
    return make_video(
        tmp_path_factory.mktemp("web-audio") / "phone clip.mp4", seconds=8, size="1280x720"
    )


def test_a_phone_video_from_the_page_sends_only_its_sound(system, user, line, phone_clip, tmp_path):
    page, proxy = line.page, line.proxy
    size = phone_clip.stat().st_size
    log_in(page, user.email, user.password)
    page.get_by_label("Start at").fill("2")
    page.get_by_label("End at").fill("5.5")
    before = proxy.bytes_up
    upload_id = creation_location(page, phone_clip)

    expect(page.locator("#notice")).to_contain_text("Uploaded phone clip.mp4 (only its sound:")
    job = finished_job(system, user, page, "phone clip.mp4")  # the video's name, not the copy's
    sent = proxy.bytes_up - before
    stored = tmp_path / "stored"
    stored.write_bytes(stored_bytes(system, upload_id))
    streams = re.findall(r"Stream #0:\d+\S*: (\w+):", describe(stored))
    assert streams == ["Audio"], describe(stored)  # the picture stayed in the browser
    assert audio_stream(stored).startswith("aac")  # copied, not re-encoded
    print(f"audio only from the page: {stored.stat().st_size} bytes stored for a {size}-byte video")
    # Only the copy crossed the line (the synthetic picture compresses far better than a
    # phone's: bench/upload.py and test_web_soundtrack.py measure real ratios).
    assert sent <= stored.stat().st_size + OVERHEAD
    assert stored.stat().st_size < size / 2
    # The copy holds the range and a second each side; the server cut it to the asked 3.5 s.
    assert probe_duration(stored) <= 3.5 + 2 * 1.0 + 0.1
    mp3 = download_mp3(system, user, job["mp3_fid"], tmp_path / "clip.mp3")
    assert abs(probe_duration(mp3) - 3.5) <= 0.05
    assert job["options"] == pytest.approx({"start": 2.0, "end": 5.5}, abs=1e-6)  # as typed


def test_upload_the_whole_video_sends_the_file_as_it_is(system, user, line, phone_clip):
    page = line.page
    log_in(page, user.email, user.password)
    page.get_by_label("Upload the whole video").check()
    upload_id = creation_location(page, phone_clip)

    expect(page.locator("#notice")).to_contain_text("Uploaded phone clip.mp4. Converting it now.")
    finished_job(system, user, page, "phone clip.mp4")
    assert stored_bytes(system, upload_id) == phone_clip.read_bytes()
