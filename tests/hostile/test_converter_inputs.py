"""Attacker-made uploads against the converter's ffmpeg, under the shipped limits.

Duration bombs must fail in seconds and leave nothing large behind; playlists,
manifests, file lists and SDP files must fail without ffmpeg opening anything
outside the job's folder (a canary file with a unique tag proves it, and strace
where it is installed).
"""

from __future__ import annotations

import shutil
import stat
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import PermanentError
from common.jobs import FAILED, JobStore
from converter import transcode as transcode_module
from converter.handler import Converter
from converter.transcode import UNSUPPORTED, MediaInfo, probe, transcode
from tests.conftest import unavailable
from tests.converter.test_handler import RecordingPublisher, delivery, queued_job
from tests.support import media

# Seconds a refused bomb may take, probe and all (it takes milliseconds here).
FAST = 5.0


@pytest.fixture(autouse=True)
def no_ffmpeg_left_behind() -> Iterator[None]:
    yield
    assert media.ffmpeg_children() == []


def silence(path: Path, *, hours: float) -> Path:
    """Write hours of 8 kHz mono silence as FLAC: a few MB, made at ~7000x real time."""
    media.run_ffmpeg(
        "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
        "-t", str(hours * 3600), "-c:a", "flac", path,
    )  # fmt: skip
    return path


def claim_flac_samples(path: Path, samples: int) -> Path:
    """Rewrite a FLAC's STREAMINFO to claim ``samples`` per channel, as a crafted header would."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC"
    # After "fLaC" and the 4-byte block header, bytes 10-17 of STREAMINFO pack the
    # sample rate (20 bits), channels - 1 (3), bits - 1 (5) and total samples (36).
    (packed,) = struct.unpack(">Q", data[18:26])
    data[18:26] = struct.pack(">Q", (packed & ~((1 << 36) - 1)) | samples)
    path.write_bytes(data)
    return path


def wav(path: Path, *, rate: int, channels: int, seconds: float) -> Path:
    """Write unsigned 8-bit PCM silence with any header the WAV format allows."""
    frames = int(rate * seconds)
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + frames * channels, b"WAVE", b"fmt ", 16, 1, channels,
        rate, rate * channels, channels, 8, b"data", frames * channels,
    )  # fmt: skip
    path.write_bytes(header + b"\x80" * (frames * channels))
    return path


# --- duration bombs --------------------------------------------------------------


def test_hours_of_silence_past_the_limit_fail_at_the_probe_and_store_nothing(
    storage, tmp_path: Path
) -> None:
    """Seven hours against the shipped 6-hour MAX_MEDIA_SECONDS; the issue's was 24."""
    jobs = JobStore(storage.client, storage.config)
    publisher = RecordingPublisher()
    workdir = tmp_path / "work"
    workdir.mkdir()
    converter = Converter(
        storage=storage, jobs=jobs, publisher=publisher, mp3_queue="mp3", workdir=str(workdir)
    )
    bomb = silence(tmp_path / "silence.flac", hours=7)
    assert bomb.stat().st_size < 5_000_000
    message = queued_job(storage, jobs, bomb)
    started = time.monotonic()

    converter.handle(message, delivery())

    assert time.monotonic() - started < FAST
    job = jobs.get(message["job_id"])
    assert job["status"] == FAILED
    assert job["error"] == "the recording is 7:00:00 long, longer than the 6-hour limit"
    assert storage.mp3s.find_one({"metadata.job_id": message["job_id"]}) is None
    assert [m["status"] for _, m in publisher.published] == ["failed"]
    assert list(workdir.iterdir()) == []


def test_a_recording_of_unknown_length_stops_at_the_limit(tmp_path: Path) -> None:
    """A 1-minute limit stands for the shipped 6 hours: a 3-minute live WebM with no duration."""
    src = media.make_audio(tmp_path / "live.webm", seconds=180, seekable=False)
    dst = tmp_path / "out.mp3"
    info = probe(src)
    assert info.duration is None
    started = time.monotonic()

    with pytest.raises(PermanentError, match=r"^the recording is longer than the 1-minute limit$"):
        transcode(src, dst, info=info, max_media_seconds=60.0)

    assert time.monotonic() - started < FAST
    assert not dst.exists()


def rich_flac(path: Path, source: str, *, seconds: float) -> Path:
    """Make a FLAC of 8 channels at 384 kHz from an ffmpeg lavfi ``source``."""
    media.run_ffmpeg(
        "-loglevel", "error", "-y", "-f", "lavfi", "-i", source,
        "-t", str(seconds), "-ac", "8", "-c:a", "flac", path,
    )  # fmt: skip
    return path


def test_costly_sound_gets_a_shorter_limit_and_fails_at_the_probe(tmp_path: Path) -> None:
    """7.1 at 384 kHz (32 times the samples of 48 kHz stereo) claiming an hour: 45 minutes fit."""
    src = rich_flac(tmp_path / "rich.flac", "anullsrc=r=384000:cl=7.1", seconds=1)
    claim_flac_samples(src, 3600 * 384_000)
    dst = tmp_path / "out.mp3"
    started = time.monotonic()

    info = probe(src)
    with pytest.raises(PermanentError, match=r"longer than the 0:45:00 limit for 8-channel 384000"):
        transcode(src, dst, info=info)

    assert (info.duration, info.audio_channels) == (3600.0, 8)
    assert time.monotonic() - started < FAST
    assert not dst.exists()


def test_a_384_khz_64_channel_wav_fails_fast(tmp_path: Path) -> None:
    src = wav(tmp_path / "wide.wav", rate=384_000, channels=64, seconds=0.5)
    dst = tmp_path / "out.mp3"
    started = time.monotonic()

    with pytest.raises(PermanentError, match=r"^ffmpeg could not convert the file: "):
        transcode(src, dst)

    assert time.monotonic() - started < FAST
    assert not dst.exists()


def test_costly_sound_within_its_limit_still_converts(tmp_path: Path) -> None:
    """Twenty seconds of 7.1 at 384 kHz fit their CPU budget (about 0.3 s of CPU here)."""
    src = rich_flac(tmp_path / "rich.flac", "sine=sample_rate=384000", seconds=20)

    result = transcode(src, tmp_path / "out.mp3")

    assert result.duration == pytest.approx(20.0, abs=0.1)


# --- files that name other files or addresses -----------------------------------------

MPD = (
    '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"'
    ' profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"'
    ' mediaPresentationDuration="PT2S" minBufferTime="PT1S"><Period>'
    '<AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="64000">'
    "<BaseURL>{canary}</BaseURL></Representation></AdaptationSet></Period></MPD>\n"
)
HOSTILE = {
    # Passes the gateway's sniff as MP4 (a "free" box); ffmpeg probes it as DASH.
    "dash-free-box": ("video", lambda canary: "<!--free-->" + MPD.format(canary=canary)),
    # Passes the sniff as MP3 (an empty ID3 tag); ffmpeg skips the tag and finds DASH.
    "dash-id3": (
        "video",
        lambda canary: "ID3\x03\x00\x00\x00\x00\x00\x00" + MPD.format(canary=canary),
    ),
    "hls": (
        "playlist.m3u8",
        lambda canary: (
            f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{canary}\n#EXT-X-ENDLIST\n"
        ),
    ),
    "concat": ("list.ffconcat", lambda canary: f"ffconcat version 1.0\nfile '{canary}'\n"),
    "sdp": (
        "stream.sdp",
        lambda canary: (
            "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
            "m=audio 5004 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
        ),
    ),
}
# Plain ffmpeg converts the canary named in these (checked below, so the files
# stay real attacks); ffmpeg's own defaults happen to stop the others.
OPENED_BY_PLAIN_FFMPEG = {"dash-free-box", "hls"}
# What a forged probe would say, so the conversion's own ffmpeg meets the file too.
FORGED = MediaInfo(
    container="mov,mp4,m4a,3gp,3g2,mj2",
    duration=2.0,
    has_video=False,
    has_audio=True,
    audio_codec="aac",
    audio_sample_rate=44100,
    audio_channels=2,
)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """Return an MP4 of noise outside the job's folder: no other file holds its packets."""
    path = tmp_path / "outside" / "canary.mp4"
    path.parent.mkdir()
    noise = f"anoisesrc=duration=2:seed={uuid.uuid4().int % 2**31}"
    media.run_ffmpeg("-loglevel", "error", "-y", "-f", "lavfi", "-i", noise, "-c:a", "aac", path)
    return path


def hostile_file(tmp_path: Path, kind: str, canary: Path) -> Path:
    name, content = HOSTILE[kind]
    job = tmp_path / "job"
    job.mkdir()
    path = job / name
    path.write_bytes(content(str(canary)).encode("latin-1"))
    return path


def refuse_both_ways(src: Path) -> None:
    """Probe ``src`` and convert it as if the probe had passed; both must refuse it."""
    dst = src.parent / "out.mp3"
    with pytest.raises(PermanentError) as probed:
        probe(src)
    with pytest.raises(PermanentError) as converted:
        transcode(src, dst, info=FORGED)
    assert str(probed.value) == str(converted.value) == UNSUPPORTED
    assert list(src.parent.iterdir()) == [src]  # no output, not even a partial one


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_file_naming_another_is_refused_and_nothing_of_the_canary_leaks(
    tmp_path: Path, canary: Path, kind: str
) -> None:
    src = hostile_file(tmp_path, kind, canary)
    if kind in OPENED_BY_PLAIN_FFMPEG:
        # The control: plain ffmpeg copies the canary's very packets out.
        plain = tmp_path / "plain.mkv"
        media.run_ffmpeg("-loglevel", "error", "-y", "-i", src, "-map", "0:a", "-c", "copy", plain)
        assert media.audio_packet_hashes(plain) == media.audio_packet_hashes(canary)

    refuse_both_ways(src)


@pytest.fixture
def strace_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run every ffmpeg the converter starts under strace; return the log of its opens."""
    strace = shutil.which("strace")
    if strace is None:
        unavailable("strace is not installed (make deploy-tools, or apt-get install strace)")
    log = tmp_path / "strace.log"
    wrapper = tmp_path / "traced-ffmpeg"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec {strace} -f -qq -A -o {log} -e trace=open,openat,socket,connect"
        f' {transcode_module.ffmpeg_exe()} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(transcode_module, "ffmpeg_exe", lambda: str(wrapper))
    return log


@pytest.mark.parametrize("kind", HOSTILE)
def test_ffmpeg_opens_nothing_outside_the_job_folder(
    tmp_path: Path, canary: Path, strace_log: Path, kind: str
) -> None:
    src = hostile_file(tmp_path, kind, canary)

    refuse_both_ways(src)

    calls = strace_log.read_text().splitlines()
    assert any(str(src) in call for call in calls)  # the trace did see ffmpeg's opens
    assert [call for call in calls if "outside" in call] == []
    assert [call for call in calls if "AF_INET" in call] == []
