"""Copying a video's audio track out for an audio-only upload, with the real ffmpeg."""

from __future__ import annotations

import os
import stat
import struct
import tempfile
import time

import pytest

from common.sniff import sniff_container
from tests.support.media import (
    audio_packet_hashes,
    ffmpeg_exe,
    make_audio,
    make_video,
    probe_duration,
    run_ffmpeg,
)
from video2mp3 import soundtrack

RATE = 48000


@pytest.fixture(autouse=True)
def private_tmp(tmp_path, monkeypatch):
    """Make the module's temp dirs inside this test's directory, where they can be counted."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def fake_ffmpeg(directory, body: str):
    """Put an ``ffmpeg`` shell script first on PATH; return its path."""
    directory.mkdir(exist_ok=True)
    script = directory / "ffmpeg"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.mark.parametrize(
    ("name", "codec", "suffix", "family"),
    [
        ("phone.mp4", "aac", ".m4a", "mp4"),
        ("holiday.mov", "alac", ".m4a", "mp4"),
        ("clip.avi", "libmp3lame", ".mp3", "mp3"),
        ("clip.mkv", "libvorbis", ".ogg", "ogg"),
        ("clip.webm", "libopus", ".mka", "matroska"),
        ("clip.mkv", "flac", ".flac", "flac"),
        ("clip.mov", "pcm_s16le", ".wav", "wav"),
        ("clip.mov", "pcm_s16be", ".mka", "matroska"),
        ("clip.mkv", "ac3", ".mka", "matroska"),
    ],
)
def test_the_audio_track_is_copied_into_a_container_the_gateway_recognises(
    tmp_path, private_tmp, name, codec, suffix, family
):
    source = make_video(tmp_path / name, seconds=3, audio_codec=codec, size="640x480")

    with soundtrack.extracted(source, {}) as track:
        assert track is not None
        assert track.path.suffix == suffix
        assert track.size == track.path.stat().st_size < source.stat().st_size
        assert sniff_container(track.path.read_bytes()[:4096]) == family
        assert abs(probe_duration(track.path) - probe_duration(source)) <= 0.05
        assert track.options == {}
        if not codec.startswith("pcm_"):
            # The same packets: copied, not encoded again.
            assert audio_packet_hashes(track.path) == audio_packet_hashes(source)
        in_use = track.path.parent
        assert in_use.parent == private_tmp
        assert stat.S_IMODE(in_use.stat().st_mode) == 0o700

    assert not in_use.exists()
    assert list(private_tmp.iterdir()) == []


def tone_from_3s(path, codec):
    """Write 8 s of video whose sound is silent until 3.0 s, then a loud tone."""
    tone = f"aevalsrc=sin(2*PI*440*t)*gte(t\\,3.0):s={RATE}:d=8"
    run_ffmpeg(
        "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=8",
        "-f", "lavfi", "-i", tone,
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
        "-c:a", codec, path,
    )  # fmt: skip
    return path


def cut_as_the_converter_does(path, options):
    """Decode ``path`` trimmed by ``options`` as the converter does; return (seconds, onset)."""
    trim = []
    if options.get("start"):
        trim += ["-ss", options["start"]]
    if options.get("end"):
        trim += ["-to", options["end"]]
    raw = run_ffmpeg(
        "-loglevel", "error", *trim, "-i", path, "-ac", "1", "-ar", str(RATE), "-f", "s16le", "-"
    ).stdout  # fmt: skip
    samples = struct.unpack(f"<{len(raw) // 2}h", raw)
    onset = next((i / RATE for i, value in enumerate(samples) if abs(value) > 3000), None)
    return len(samples) / RATE, onset


@pytest.mark.parametrize("codec", ["aac", "libopus", "libmp3lame", "flac", "ac3", "pcm_s16le"])
@pytest.mark.parametrize(
    "trim",
    [{"start": "2.5", "end": "6"}, {"start": "0:02.5"}, {"end": "6"}, {"start": "0.4", "end": "5"}],
    ids=["start-end", "start", "end", "start-within-margin"],
)
def test_a_trim_copies_only_the_range_with_a_margin_and_cuts_the_same_audio(tmp_path, codec, trim):
    source = tone_from_3s(tmp_path / "clip.mkv", codec)
    wanted = cut_as_the_converter_does(source, trim)

    with soundtrack.extracted(source, trim) as track:
        assert track is not None
        got = cut_as_the_converter_does(track.path, track.options)
        copied = probe_duration(track.path)

    start = soundtrack.parse_time(trim.get("start")) or 0.0
    end = soundtrack.parse_time(trim.get("end")) or 8.0
    margin = soundtrack.TRIM_MARGIN_SECONDS
    expected_copy = min(end + margin, 8.0) - max(start - margin, 0.0)
    assert abs(copied - expected_copy) <= 0.1, "only the range and its margins are copied"
    assert abs(got[0] - wanted[0]) <= 0.05, "the MP3 is as long as the range"
    # A stream copy starts at a packet: the tone may move by at most about one packet.
    assert got[1] is not None
    assert abs(got[1] - wanted[1]) <= 0.05


@pytest.mark.parametrize(
    "make",
    [
        lambda d: make_audio(d / "song.m4a"),  # already audio: sent as it is
        lambda d: make_video(d / "silent.mp4", seconds=1, audio_codec=None),
        lambda d: _write(d / "random.mp4", os.urandom(100_000)),
        lambda d: _write(d / "empty.mp4", b""),
    ],
    ids=["audio-file", "no-audio-track", "not-media", "empty"],
)
def test_files_without_a_video_and_its_sound_are_sent_whole(tmp_path, private_tmp, make):
    source = make(tmp_path)
    with soundtrack.extracted(source, {}) as track:
        assert track is None
    assert list(private_tmp.iterdir()) == []


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "trim",
    [{"start": "9"}, {"start": "5", "end": "4"}, {"start": "soon"}, {"end": "1:75"}],
    ids=["start-past-the-end", "end-before-start", "unreadable", "not-a-clock-time"],
)
def test_a_trim_the_server_must_refuse_sends_the_whole_file(tmp_path, trim):
    source = make_video(tmp_path / "clip.mp4", seconds=3)
    with soundtrack.extracted(source, trim) as track:
        assert track is None


def test_an_ffmpeg_that_fails_means_the_whole_file(tmp_path, private_tmp, monkeypatch):
    fake = fake_ffmpeg(tmp_path / "bin", "exit 1")
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert soundtrack.find_ffmpeg() == str(fake)
    source = make_video(tmp_path / "clip.mp4", seconds=1)

    with soundtrack.extracted(source, {}) as track:
        assert track is None
    assert list(private_tmp.iterdir()) == []


def test_a_copy_that_fails_half_way_means_the_whole_file(tmp_path, private_tmp, monkeypatch):
    # Probes as the real one does, but every copy writes a little and fails.
    real = ffmpeg_exe()
    body = (
        'case "$*" in *"-c:a"*) for last; do :; done; '
        'printf partial > "${last#file:}"; exit 1;; esac\n'
        f'exec "{real}" "$@"'
    )
    monkeypatch.setenv("PATH", f"{fake_ffmpeg(tmp_path / 'bin', body).parent}:{os.environ['PATH']}")
    source = make_video(tmp_path / "clip.mp4", seconds=1)

    with soundtrack.extracted(source, {}) as track:
        assert track is None
    assert list(private_tmp.iterdir()) == []


def test_a_copy_that_takes_too_long_is_stopped(tmp_path, private_tmp, monkeypatch):
    real = ffmpeg_exe()
    body = f'case "$*" in *"-c:a"*) exec sleep 30;; esac\nexec "{real}" "$@"'
    monkeypatch.setenv("PATH", f"{fake_ffmpeg(tmp_path / 'bin', body).parent}:{os.environ['PATH']}")
    monkeypatch.setattr(soundtrack, "COPY_TIMEOUT_SECONDS", 1.0)
    source = make_video(tmp_path / "clip.mp4", seconds=1)

    started = time.monotonic()
    with soundtrack.extracted(source, {}) as track:
        assert track is None
    assert time.monotonic() - started < 10
    assert list(private_tmp.iterdir()) == []


def test_without_any_ffmpeg_the_whole_file_is_sent(tmp_path, monkeypatch):
    monkeypatch.setattr(soundtrack, "find_ffmpeg", lambda: None)
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    with soundtrack.extracted(source, {}) as track:
        assert track is None


def test_imageio_ffmpeg_is_used_when_none_is_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg there
    assert soundtrack.find_ffmpeg() == ffmpeg_exe()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("1:30", 90.0), ("0:01:30.5", 90.5), (" 2.25 ", 2.25), ("1:2:3", 3723.0)],
)
def test_times_are_read_as_the_server_reads_them(text, seconds):
    assert soundtrack.parse_time(text) == seconds


def test_unreadable_times_are_none():
    for text in ("soon", "1:75", "1:60:00", "-3", None):
        assert soundtrack.parse_time(text) is None
