"""The page's loudness, cover and track options and what a done job shows, in Chromium.

Through the real stack: a video with chapters, uploaded whole from the page with
split=chapters and loudness -16, and another in Opus; their rows show the options, the
loudness measured, the tracks (each downloadable), the waveform and a player that plays
and seeks; both download as one ZIP that holds the tracks.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from bson import ObjectId

from tests.e2e.test_web import (
    ARTIFACTS,
    CONVERSION_TIMEOUT_MS,
    api_jobs,
    download_from,
    job_row,
    log_in,
    new_tab,
)
from tests.support.media import (
    audio_stream,
    make_video,
    probe_duration,
    video_with_chapters,
)

try:
    from playwright.sync_api import Page, expect
except ImportError:  # pragma: no cover - the browser fixture (tests/e2e/conftest.py) says so
    Page = expect = None

pytestmark = pytest.mark.slow

CHAPTERS = [("Intro", 0, 3), ("The middle", 3, 6), ("Outro", 6, 9)]
MINUS = "\u2212"


@pytest.fixture
def page(browser, system) -> Iterator[Page]:
    """Open a fresh browser profile on the gateway, failing on script errors and CSP violations."""
    with new_tab(browser, system.gateway) as tab:
        yield tab


def level(value: float) -> str:
    """Return a level as the page writes it: one decimal, a true minus sign."""
    return f"{value:.1f}".replace("-", MINUS)


def waveform_pixels(row) -> int:
    """Return how many pixels of a row's waveform canvas are drawn on."""
    return row.locator("canvas.waveform").evaluate(
        """(canvas) => {
            const context = canvas.getContext('2d');
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let drawn = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] > 0) drawn += 1;
            return drawn;
        }"""
    )


def audio_state(row) -> dict:
    return row.locator("audio").evaluate(
        "(audio) => ({paused: audio.paused, time: audio.currentTime, duration: audio.duration})"
    )


def test_the_options_are_checked_in_the_page_before_anything_is_sent(system, user, page, tmp_path):
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    log_in(page, user.email, user.password)
    page.locator("#file-input").set_input_files(source)
    upload = page.get_by_role("button", name="Upload and convert")
    whole = page.get_by_label("Upload the whole video")

    page.get_by_label("Loudness", exact=True).select_option(label="Other…")
    page.get_by_label("Loudness in LUFS").fill("-100")
    upload.click()
    expect(page.locator("#message")).to_contain_text("from -70 to -5")
    expect(page.get_by_label("Loudness in LUFS")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Loudness", exact=True).select_option(label="As recorded")
    expect(page.get_by_label("Loudness in LUFS")).to_be_hidden()

    page.get_by_label("Tracks", exact=True).select_option(label="Parts of a set length")
    page.get_by_label("Length of each part").fill("0:05")
    upload.click()
    expect(page.locator("#message")).to_contain_text("at least 10 seconds")
    expect(page.get_by_label("Length of each part")).to_have_attribute("aria-invalid", "true")

    # A cover or chapters need the picture or the container: the whole video goes, and says why.
    page.get_by_label("Tracks", exact=True).select_option(label="One per chapter")
    expect(whole).to_be_checked()
    expect(whole).to_be_disabled()
    expect(page.locator("#full-upload-hint")).to_have_text(
        "(needed for its chapters: only the video itself has them)"
    )
    page.get_by_label("Tracks", exact=True).select_option(label="One file")
    expect(whole).not_to_be_checked()
    expect(whole).to_be_enabled()

    page.get_by_label("Cover art").select_option(label="A frame of the video")
    expect(whole).to_be_checked()
    page.get_by_label("Format").select_option(label="WAV (uncompressed)")
    expect(page.get_by_label("Cover art")).to_be_disabled()
    expect(page.get_by_label("Cover art")).to_have_value("")
    expect(page.locator("#extras-hint")).to_contain_text("WAV has no place for cover art")
    expect(whole).not_to_be_checked()
    assert api_jobs(system, user) == []

    # A combination the page does not offer, as an old tab would send it: the server names it.
    page.evaluate(
        """() => {
            const cover = document.getElementById('opt-cover');
            cover.disabled = false;
            cover.value = 'frame';
        }"""
    )
    upload.click()
    expect(page.locator("#message")).to_contain_text("no place for cover art")
    expect(page.get_by_label("Cover art")).to_have_attribute("aria-invalid", "true")
    assert api_jobs(system, user) == []


def test_the_pure_helpers_read_times_peaks_and_options_as_the_server_does(user, page):
    log_in(page, user.email, user.password)
    results = page.evaluate(
        """async () => {
            const waveform = await import('/assets/waveform.js');
            const options = await import('/assets/output-options.js');
            const { parseTime, formatLevel } = await import('/assets/format.js');
            const refused = (check, text) => {
                try { check(text); return null; } catch (problem) { return problem.field; }
            };
            return {
                levels: waveform.columnLevels([0.1, 0.9, 0.2, 0.4, 0.3, 0.0], 3),
                stretched: waveform.columnLevels([0.5, 1], 4),
                peaks: waveform.peaksOf({peaks: [0.5, 2, -1, 'x', null]}),
                capped: waveform.peaksOf({peaks: new Array(20000).fill(1)}).length,
                times: ['90', '1:30', '1:02:03.5', '1:60', 'soon', ''].map(
                    (text) => String(parseTime(text))
                ),
                level: formatLevel(-31.24),
                loudness: ['-16', '-4'].map((text) => refused(options.checkLoudness, text)),
                parts: ['10', '9.9'].map((text) => refused(options.checkPartLength, text)),
                reasons: [
                    options.wholeVideoReason({cover_at: '5'}),
                    options.wholeVideoReason({cover: 'none', split: '600'}),
                    options.wholeVideoReason({cover: 'frame', split: 'chapters'}),
                ],
            };
        }"""
    )
    assert results["levels"] == [0.9, 0.4, 0.3]
    assert results["stretched"] == [0.5, 0.5, 1, 1]
    assert results["peaks"] == [0.5, 1, 0, 0, 0]
    assert results["capped"] == 10_000
    assert results["times"] == ["90", "90", "3723.5", "NaN", "NaN", "null"]
    assert results["level"] == f"{MINUS}31.2"
    assert results["loudness"] == [None, "loudness"]
    assert results["parts"] == [None, "split"]
    assert results["reasons"] == ["its cover", None, "its cover and chapters"]


def test_a_split_and_normalised_video_shows_its_tracks_loudness_waveform_and_plays(
    system, user, page, tmp_path
):
    chaptered = video_with_chapters(tmp_path / "talk.mp4", CHAPTERS)
    other = make_video(tmp_path / "song clip.mp4", seconds=4, frequency=660)
    log_in(page, user.email, user.password)

    page.get_by_label("Tracks", exact=True).select_option(label="One per chapter")
    page.get_by_label("Loudness", exact=True).select_option(label=f"{MINUS}16 LUFS (podcast)")
    page.locator("#file-input").set_input_files(chaptered)
    page.get_by_role("button", name="Upload and convert").click()
    expect(page.locator("#notice")).to_contain_text(
        "Uploaded talk.mp4 (the whole video, for its chapters)"
    )
    page.get_by_label("Tracks", exact=True).select_option(label="One file")
    page.get_by_label("Loudness", exact=True).select_option(label="As recorded")
    page.get_by_label("Format").select_option(label="Opus")
    page.locator("#file-input").set_input_files(other)
    page.get_by_role("button", name="Upload and convert").click()
    expect(page.locator("#notice")).to_contain_text("Uploaded song clip.mp4 (only its sound:")

    talk, song = job_row(page, "talk.mp4"), job_row(page, "song clip.mp4")
    for row in (talk, song):
        expect(row).to_have_attribute("data-status", "done", timeout=CONVERSION_TIMEOUT_MS)
    jobs = {job["filename"]: job for job in api_jobs(system, user)}
    talk_job, song_job = jobs["talk.mp4"], jobs["song clip.mp4"]
    stored = system.videos["fs.files"].find_one({"_id": ObjectId(talk_job["video_fid"])})
    assert stored["length"] == chaptered.stat().st_size  # the whole video, not its sound

    # What was asked for, and the loudness measured.
    expect(talk.locator(".job-meta")).to_contain_text(f"MP3 · 192 kbit/s · {MINUS}16 LUFS")
    expect(talk.locator(".job-meta")).to_contain_text("a track per chapter")
    expect(song.locator(".job-meta")).to_contain_text("Opus")
    measured = talk_job["loudness"]
    assert abs(measured["output_i"] - -16) <= 1, measured
    figures = f"{level(measured['input_i'])} → {level(measured['output_i'])} LUFS"
    expect(talk.locator(".job-loudness")).to_contain_text(f"Loudness {figures}")
    expect(song.locator(".job-loudness")).to_be_hidden()

    # The tracks, by their chapters, each downloadable under the server's name.
    titles = [title for title, _start, _end in CHAPTERS]
    expect(talk.locator(".job-tracks .track-title")).to_have_text(titles)
    expect(song.locator(".job-tracks")).to_be_hidden()
    second = talk_job["tracks"][1]
    saved = download_from(talk, "Download track 2: The middle", tmp_path / "tracks")
    assert saved.name == second["filename"]
    assert abs(probe_duration(saved) - 3) <= 0.2
    expect(page.locator("#notice")).to_have_text(f"Saved {second['filename']}.")

    # The waveforms, drawn once each row came into view.
    for row in (talk, song):
        expect(row.locator("canvas.waveform")).to_have_attribute("data-state", "drawn")
        assert waveform_pixels(row) > 500
    expect(talk.locator(".player-time")).to_have_text("0:00 / 0:09")

    # Play, then seek by clicking three quarters along the waveform.
    talk.get_by_role("button", name="Play talk.mp4").click()
    page.wait_for_function(
        "() => { const a = document.querySelector('li.job audio');"
        " return a && !a.paused && a.currentTime > 0.3; }"
    )
    expect(talk.get_by_role("button", name="Pause talk.mp4")).to_be_visible()
    talk.get_by_role("button", name="Pause talk.mp4").click()
    wave = talk.get_by_role("slider", name=re.compile("^Waveform of the MP3 of talk.mp4"))
    box = wave.bounding_box()
    wave.click(position={"x": box["width"] * 0.75, "y": box["height"] / 2})
    state = audio_state(talk)
    assert state["paused"]
    assert abs(state["time"] - 0.75 * state["duration"]) <= 0.3, state
    expect(wave).to_have_attribute("aria-valuetext", re.compile(r"^0:0[67] / 0:09$"))

    # Playing the other row lets go of the first one's audio.
    song.get_by_role("button", name="Play song clip.mp4").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('li.job audio')].length === 1"
        " && !document.querySelector('li.job audio').paused"
    )
    expect(talk.locator("audio")).to_have_count(0)

    # Both as one ZIP: the split job's tracks are in it, beside the other job's output.
    page.get_by_label("Select all done").check()
    with page.expect_download() as started:
        page.get_by_role("button", name="Download 2 as ZIP").click()
    archive = tmp_path / started.value.suggested_filename
    started.value.save_as(archive)
    with zipfile.ZipFile(archive) as opened:
        assert opened.testzip() is None
        entries = {Path(entry).name: entry for entry in opened.namelist()}
        for track in talk_job["tracks"]:
            assert track["filename"] in entries, entries
        song_audio = tmp_path / "song clip.opus"
        song_audio.write_bytes(opened.read(entries["song clip.opus"]))
    assert re.match(r"opus\b", audio_stream(song_audio))
    assert song_job["tracks"] is None

    page.get_by_label("Select all done").uncheck()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "web-features.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 10_000
