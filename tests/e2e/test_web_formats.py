"""The web page's Format select in Chromium: what each format allows, and its download."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.test_web import (
    ARTIFACTS,
    CONVERSION_TIMEOUT_MS,
    api_jobs,
    download_from,
    job_row,
    log_in,
    new_tab,
)
from tests.support.media import audio_stream, make_video, probe_duration, read_tags

try:
    from playwright.sync_api import Page, expect
except ImportError:  # pragma: no cover - the browser fixture (tests/e2e/conftest.py) says so
    Page = expect = None

pytestmark = pytest.mark.slow


@pytest.fixture
def page(browser, system) -> Iterator[Page]:
    """Open a fresh browser profile on the gateway, failing on script errors and CSP violations."""
    with new_tab(browser, system.gateway) as tab:
        yield tab


def enabled_options(page, select_id: str) -> list[str]:
    """Return the labels of the options a user can pick in a select (none when it is disabled)."""
    return page.evaluate(
        """(id) => {
            const select = document.getElementById(id);
            if (select.disabled) return [];
            return [...select.options]
                .filter((o) => !o.disabled && !(o.parentElement.disabled))
                .map((o) => o.label);
        }""",
        select_id,
    )


def test_the_format_select_offers_only_what_each_format_takes(page, user):
    log_in(page, user.email, user.password)
    quality = page.get_by_label("Quality")
    page.get_by_label("Quality").select_option(label="V2 (about 190 kbit/s)")
    page.get_by_label("Sample rate").select_option(label="44.1 kHz")

    page.get_by_label("Format").select_option(label="Opus")
    # VBR qualities are LAME's: Opus takes bitrates only, and codes at 48 kHz and its divisors.
    expect(quality).to_have_value("")
    expect(page.get_by_label("Sample rate")).to_have_value("")
    offered = enabled_options(page, "opt-encoding")
    assert offered[0] == "Default: 128 kbit/s Opus"
    assert "320 kbit/s" in offered
    assert not any(label.startswith("V") for label in offered)
    rates = enabled_options(page, "opt-sample-rate")
    assert rates == ["Same as the video", "48 kHz", "24 kHz", "16 kHz", "12 kHz", "8 kHz"]

    page.get_by_label("Format").select_option(label="FLAC (lossless)")
    expect(quality).to_be_disabled()
    expect(quality.locator("option[value='']")).to_have_text("Lossless: no bitrate")
    assert "44.1 kHz" in enabled_options(page, "opt-sample-rate")

    page.get_by_label("Format").select_option(label="MP3 (default)")
    expect(quality).to_be_enabled()
    assert "V0, best (about 245 kbit/s)" in enabled_options(page, "opt-encoding")


def test_a_flac_chosen_in_the_page_downloads_as_a_flac(system, user, page, tmp_path):
    source = make_video(tmp_path / "holiday clip.mp4", seconds=3)
    log_in(page, user.email, user.password)

    page.get_by_label("Format").select_option(label="FLAC (lossless)")
    page.get_by_label("Artist").fill("The Testers")
    page.locator("#file-input").set_input_files(source)
    page.get_by_role("button", name="Upload and convert").click()

    row = job_row(page, "holiday clip.mp4")
    expect(row).to_have_attribute("data-status", "done", timeout=CONVERSION_TIMEOUT_MS)
    expect(row.locator(".job-meta")).to_contain_text("FLAC")
    expect(page.locator("#notice")).to_contain_text("the FLAC is ready to download")
    [job] = api_jobs(system, user)
    assert job["options"] == {"format": "flac", "artist": "The Testers"}
    saved = download_from(row, "Download the FLAC of holiday clip.mp4", tmp_path / "downloaded")
    assert saved.name == "holiday clip.flac"
    assert re.match(r"flac\b", audio_stream(saved))
    assert abs(probe_duration(saved) - probe_duration(source)) <= 0.1
    assert read_tags(saved)["artist"] == "The Testers"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "web-formats.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 10_000


def test_a_combination_the_page_does_not_offer_is_named_by_the_server(system, user, page, tmp_path):
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    log_in(page, user.email, user.password)
    page.get_by_label("Format").select_option(label="Opus")
    # A rate the page disables for Opus, as a hand-edited page or an old tab would send.
    page.evaluate(
        """() => {
            const select = document.getElementById('opt-sample-rate');
            select.querySelector('option[value="44100"]').disabled = false;
            select.value = '44100';
        }"""
    )
    page.locator("#file-input").set_input_files(source)
    page.get_by_role("button", name="Upload and convert").click()

    expect(page.locator("#message")).to_contain_text("sample_rate")
    expect(page.get_by_label("Sample rate")).to_have_attribute("aria-invalid", "true")
    assert system.videos["fs.files"].count_documents({"metadata.owner": user.email}) == 0
    assert api_jobs(system, user) == []
