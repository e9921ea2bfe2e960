"""The page's audio-only upload: soundtrack.js in Debian's Chromium, served by the real gateway.

The module and the mp4box.js it loads come from the gateway's own origin under its
Content-Security-Policy (a violation fails the test: test_web's ``new_tab``).
A real video goes in through a file input; the M4A the module makes comes back to Python
and is checked with ffmpeg the way the converter will read it: one AAC (or MP3) stream
with the video's own packets, byte for byte (no re-encoding), and decoded, exactly the
video's sound over the copied span, sample for sample (a shift of one sample fails).
The sound is a stereo chirp, so no stretch of it repeats: a sine tone would look the same
shifted by a whole second, exactly the trim margin.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import re
from pathlib import Path

import pytest
import requests

from common.sniff import sniff_container
from tests.e2e.test_web import api_jobs, new_tab
from tests.support.media import (
    audio_packet_hashes,
    audio_stream,
    describe,
    make_audio,
    make_video,
    mp4_boxes,
    probe_duration,
    run_ffmpeg,
    truncate,
)
from tests.support.polling import wait_until
from video2mp3.soundtrack import TRIM_MARGIN_SECONDS

log = logging.getLogger(__name__)

pytestmark = pytest.mark.slow

VENDORED_MP4BOX = "/assets/vendor/mp4box/mp4box.all.js"
# Two voices sweeping apart: left 300 Hz rising, right 500 Hz rising, never in step.
CHIRP = "aevalsrc=sin(2*PI*(300+150*t)*t)|sin(2*PI*(500+70*t)*t)"
# The copy starts on a whole millisecond that is a whole number of samples (10 ms at 44.1 kHz).
GRID_SECONDS = {44100: 0.01, 48000: 0.001}
CONVERSION_TIMEOUT_S = 60

# Give the page a file input of its own, import the module from the gateway, copy the chosen
# file's sound, and hand the M4A back as base64 with what the module said and how long it took.
EXTRACT = """async ([start, end]) => {
    const { audioTrackOf } = await import("/assets/soundtrack.js");
    const file = document.getElementById("soundtrack-source").files[0];
    const began = performance.now();
    const track = await audioTrackOf(file, { start, end });
    const milliseconds = performance.now() - began;
    if (track === null) return null;
    const bytes = new Uint8Array(await track.blob.arrayBuffer());
    let binary = "";
    for (let at = 0; at < bytes.length; at += 0x8000) {
        binary += String.fromCharCode(...bytes.subarray(at, at + 0x8000));
    }
    return { base64: btoa(binary), type: track.blob.type, options: track.options,
             codec: track.codec, milliseconds };
}"""


@pytest.fixture
def tab(browser, system):
    """Open the gateway's page; a CSP violation or a script error there fails the test."""
    with new_tab(browser, system.gateway) as opened:
        opened.goto("/")
        yield opened


def make_recording(
    path: Path,
    *,
    seconds: float = 8.0,
    size: str = "320x240",
    rate: int = 25,
    video_bitrate: str | None = None,
    audio_codec: str = "aac",
    audio_bitrate: str = "128k",
    sample_rate: int = 44100,
    faststart: bool = False,
) -> Path:
    """Write a video whose sound is the chirp, as a phone writes it: H.264 and AAC, moov last.

    ``video_bitrate`` fills the picture with noise coded at that rate, as a camera's
    sensor fills a real one; otherwise the test picture compresses to next to nothing.
    PNS (noise substitution) is off: its noise differs with where decoding starts.
    """
    picture = f"testsrc2=size={size}:rate={rate}:duration={seconds}"
    video = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if video_bitrate:
        picture += ",noise=alls=20:allf=t"
        video += ["-b:v", video_bitrate, "-maxrate", video_bitrate, "-bufsize", video_bitrate]
    audio = ["-c:a", audio_codec, "-b:a", audio_bitrate]
    if audio_codec == "aac":
        audio += ["-aac_pns", "0"]
    run_ffmpeg(
        "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", picture,
        "-f", "lavfi", "-i", f"{CHIRP}:s={sample_rate}:d={seconds}",
        "-map", "0:v", "-map", "1:a", *video, *audio,
        *(["-movflags", "+faststart"] if faststart else []),
        path,
        timeout=180,
    )  # fmt: skip
    return path


def extract(tab, source: Path, start: str | None = None, end: str | None = None) -> dict | None:
    """Run audioTrackOf in the page on ``source``; return its answer, the M4A as bytes."""
    tab.evaluate(
        """() => {
            if (document.getElementById("soundtrack-source")) return;
            const input = document.createElement("input");
            input.type = "file";
            input.id = "soundtrack-source";
            document.body.append(input);
        }"""
    )
    tab.set_input_files("#soundtrack-source", source)
    answer = tab.evaluate(EXTRACT, [start, end])
    if answer is not None:
        answer["bytes"] = base64.b64decode(answer.pop("base64"))
    return answer


def decoded(path: Path) -> bytes:
    """Return the first audio stream decoded to 16-bit PCM, as the converter's ffmpeg reads it."""
    return run_ffmpeg(
        "-loglevel", "error", "-i", path, "-map", "0:a:0", "-f", "s16le", "-c:a", "pcm_s16le", "-"
    ).stdout  # fmt: skip


def stream_format(path: Path) -> str:
    """Return the codec, profile, rate, layout and sample format, without the bitrate."""
    return re.sub(r", \d+ kb/s.*$", "", audio_stream(path))


def copy_start(start: float, sample_rate: int) -> float:
    """Return where the copy of a trim from ``start`` begins: the margin earlier, on the grid."""
    grid = GRID_SECONDS[sample_rate]
    return max(0.0, math.floor(round((start - TRIM_MARGIN_SECONDS) / grid, 6)) * grid)


def assert_copied(source: Path, m4a: Path, *, begins: float, stops: float | None) -> None:
    """Assert that ``m4a`` holds ``source``'s sound from ``begins`` to ``stops`` (or the end)."""
    report = describe(m4a)
    assert len(re.findall(r"Stream #0:\d+", report)) == 1, report
    assert stream_format(m4a) == stream_format(source)
    # The packets are the video's own, in order, none re-encoded.
    packets, originals = audio_packet_hashes(m4a), audio_packet_hashes(source)
    first = originals.index(packets[0])
    assert packets == originals[first : first + len(packets)]
    # Timed exactly: its length, and where it sits in the video's sound.
    rate = int(re.search(r"(\d+) Hz", audio_stream(source))[1])
    frame = 2 * 2  # two channels of 16 bits
    pcm, whole = decoded(m4a), decoded(source)
    ends = len(whole) / frame / rate if stops is None else min(stops, len(whole) / frame / rate)
    assert abs(probe_duration(m4a) - (ends - begins)) <= 1024 / rate  # within a packet
    assert len(pcm) == round((ends - begins) * rate) * frame
    offset = round(begins * rate) * frame
    expected = whole[offset : offset + len(pcm)]
    assert hashlib.sha256(pcm).hexdigest() == hashlib.sha256(expected).hexdigest(), (
        "the copy does not sound like the video over the same span"
    )


@pytest.mark.parametrize(
    ("name", "recording", "start", "end"),
    [
        ("phone.mp4", {}, None, None),
        ("phone.mp4", {"faststart": True}, None, None),
        ("phone.m4v", {}, None, None),
        ("phone.mov", {}, None, None),
        ("phone.mp4", {}, "3", "5.5"),
        ("phone.mov", {"sample_rate": 48000}, "0:02.5", "0:06"),
        ("phone.mp4", {"faststart": True}, "6.2345", None),
        ("phone.mp4", {}, "0.5", "4"),
        ("phone.mp4", {"audio_codec": "libmp3lame"}, "4", "7"),
    ],
    ids=[
        "mp4-index-last",
        "mp4-index-first",
        "m4v",
        "mov",
        "trim-in-the-middle",
        "mov-48k-trim-in-minutes",
        "start-only",
        "trim-within-the-margin",
        "mp3-in-mp4",
    ],
)
def test_the_page_copies_a_videos_sound_sample_for_sample(
    tab, system, tmp_path, name, recording, start, end
):
    source = make_recording(tmp_path / name, **recording)
    loaded = []
    tab.on("response", lambda response: loaded.append((response.url, response.status)))

    answer = extract(tab, source, start, end)
    tab.reload()  # as a page reloaded mid-upload makes the copy again, to resume the upload
    again = extract(tab, source, start, end)

    assert answer is not None
    assert (f"{system.gateway}{VENDORED_MP4BOX}", 200) in loaded
    assert answer["type"] == "audio/mp4"
    assert answer["codec"] == ("mp3" if recording.get("audio_codec") == "libmp3lame" else "aac")
    assert again["bytes"] == answer["bytes"], "the same file and range give other bytes"
    m4a = tmp_path / "sound.m4a"
    m4a.write_bytes(answer["bytes"])
    assert mp4_boxes(m4a) == ["ftyp", "moov", "mdat"]
    assert sniff_container(answer["bytes"]) is not None, "the gateway would refuse it"
    assert len(answer["bytes"]) < source.stat().st_size / 2

    rate = recording.get("sample_rate", 44100)
    begins = copy_start(seconds_of(start), rate) if start else 0.0
    stops = seconds_of(end) + TRIM_MARGIN_SECONDS if end else None
    typed = {"start": start, "end": end}
    shifted = {key: seconds_of(value) - begins for key, value in typed.items() if value}
    if shifted and begins:
        shifted["clip_start"] = begins  # where the copy begins, for the job to show the times
    assert {key: float(value) for key, value in answer["options"].items()} == pytest.approx(
        shifted, abs=1e-6
    )
    assert_copied(source, m4a, begins=begins, stops=stops)


def seconds_of(text: str) -> float:
    """Read a time as typed in the form: 90, 1:30 or 0:01:30.5."""
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def make_fragmented(path: Path) -> Path:
    """Write a fragmented MP4 (moof boxes, as live streams and some cameras write)."""
    source = make_recording(path.with_name(f"whole-{path.name}"), seconds=3)
    run_ffmpeg("-loglevel", "error", "-y", "-i", source, "-c", "copy",
               "-movflags", "frag_keyframe+empty_moov", path)  # fmt: skip
    return path


def make_garbage(path: Path) -> Path:
    """Write bytes that only claim to be an MP4: a file type box, then noise."""
    path.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 400)
    return path


# Files whose sound the page leaves in place, sending the whole file: each made in a folder.
NOT_COPIED = {
    "no-sound": lambda tmp: make_video(tmp / "silent film.mp4", audio_codec=None),
    "webm": lambda tmp: make_video(tmp / "clip.webm"),
    "mkv": lambda tmp: make_video(tmp / "clip.mkv"),
    "audio-only-m4a": lambda tmp: make_audio(tmp / "song.m4a"),
    "fragmented-mp4": lambda tmp: make_fragmented(tmp / "stream.mp4"),
    "alac": lambda tmp: make_recording(tmp / "lossless.mov", audio_codec="alac"),
    "truncated-index-last": lambda tmp: truncate(
        make_recording(tmp / "a.mp4"), tmp / "cut.mp4", fraction=0.6
    ),
    "truncated-index-first": lambda tmp: truncate(
        make_recording(tmp / "a.mp4", faststart=True), tmp / "cut.mp4", fraction=0.6
    ),
    "garbage": lambda tmp: make_garbage(tmp / "garbage.mp4"),
}


@pytest.mark.parametrize("kind", NOT_COPIED)
def test_anything_else_is_sent_whole(tab, tmp_path, kind):
    assert extract(tab, NOT_COPIED[kind](tmp_path)) is None


@pytest.mark.parametrize(
    ("start", "end"),
    [("5", "3"), ("9", None), ("1:75", None), ("soon", None)],
    ids=["end-before-start", "start-past-the-end", "seventy-five-seconds", "no-time"],
)
def test_a_trim_the_server_refuses_is_sent_whole_for_it_to_say_why(tab, tmp_path, start, end):
    assert extract(tab, make_recording(tmp_path / "clip.mp4"), start, end) is None


def test_a_phone_recording_shrinks_to_its_sound(tab, tmp_path):
    # 1080p at ~16 Mbit/s with 256 kbit/s AAC at 48 kHz: what a phone records.
    source = make_recording(
        tmp_path / "phone.mp4",
        seconds=30,
        size="1920x1080",
        rate=30,
        video_bitrate="16M",
        audio_bitrate="256k",
        sample_rate=48000,
    )

    cold = extract(tab, source)  # fetches and compiles mp4box.js first
    warm = extract(tab, source)
    trimmed = extract(tab, source, "10", "20")

    size = source.stat().st_size
    ratio = len(warm["bytes"]) / size
    log.info(
        "a 30 s 1080p phone recording of %d bytes: its sound is %d bytes (%.2f%%), copied in "
        "%.0f ms (%.0f ms loading mp4box.js first); 10-20 s is %d bytes, copied in %.0f ms",
        size, len(warm["bytes"]), 100 * ratio, warm["milliseconds"], cold["milliseconds"],
        len(trimmed["bytes"]), trimmed["milliseconds"],
    )  # fmt: skip
    assert cold["bytes"] == warm["bytes"]
    assert ratio < 0.02  # 256 kbit/s of 16.25 Mbit/s is 1.6%
    assert warm["milliseconds"] < 2000
    m4a = tmp_path / "sound.m4a"
    m4a.write_bytes(trimmed["bytes"])
    assert_copied(source, m4a, begins=9.0, stops=21.0)


@pytest.mark.parametrize(
    ("name", "recording", "start", "end", "shifted"),
    [
        ("holiday.mp4", {}, "4", "7.5", {"start": "1", "end": "4.5", "clip_start": "3"}),
        (
            "holiday.mov",
            {"sample_rate": 48000},
            "0:05.4321",
            "8",
            {"start": "1.0001", "end": "3.568", "clip_start": "4.432"},
        ),
    ],
    ids=["mp4", "mov-48k"],
)
def test_the_server_makes_the_same_mp3_from_the_copy(
    system, user, tab, tmp_path, name, recording, start, end, shifted
):
    source = make_recording(tmp_path / name, seconds=10, **recording)
    answer = extract(tab, source, start, end)
    assert answer["options"] == shifted

    trim = {"start": start, "end": end}
    whole = convert(system, user, tmp_path / "whole.mp3", name, source.read_bytes(), trim)
    copied = convert(system, user, tmp_path / "copied.mp3", name, answer["bytes"], shifted)
    # The copy's job shows the trim as the user typed it, in the video's times.
    [copy_job, whole_job] = api_jobs(system, user)[:2]
    assert copy_job["options"] == whole_job["options"]
    assert copy_job["options"] == pytest.approx(
        {"start": seconds_of(start), "end": seconds_of(end)}, abs=1e-6
    )

    assert abs(probe_duration(copied) - (seconds_of(end) - seconds_of(start))) <= 0.03
    assert hashlib.sha256(decoded(copied)).digest() == hashlib.sha256(decoded(whole)).digest()


def convert(system, user, mp3: Path, filename: str, body: bytes, options: dict) -> Path:
    """Upload ``body`` as ``filename`` with ``options``, wait for its MP3 and save it."""
    answer = requests.post(
        f"{system.gateway}/upload",
        headers=user.headers,
        files={"file": (filename, body)},
        data=options,
        timeout=60,
    )
    assert answer.status_code == 202, answer.text
    job = answer.json()

    def done() -> bool:
        status = requests.get(
            f"{system.gateway}{job['status_url']}", headers=user.headers, timeout=10
        ).json()["status"]
        assert status != "failed"
        return status == "done"

    wait_until(done, timeout=CONVERSION_TIMEOUT_S, interval=0.25)
    download = requests.get(
        f"{system.gateway}/download",
        params={"fid": job["video_fid"]},
        headers=user.headers,
        timeout=30,
    )
    assert download.status_code == 200, download.text
    mp3.write_bytes(download.content)
    return mp3
