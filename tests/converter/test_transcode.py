"""The ffmpeg layer on real media: formats in, MP3 out, and every way it can fail."""

from __future__ import annotations

import array
import dataclasses
import os
import random
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from common.errors import PermanentError, TransientError
from common.options import Options
from converter.transcode import (
    MediaInfo,
    conversion_limits,
    needs_reencode,
    probe,
    transcode,
)
from tests.support import media
from tests.support.media import ffmpeg_children
from video2mp3 import soundtrack

SECONDS = 3.0
SMALL = "160x120"


def assert_mp3(path: Path, *, seconds: float) -> bytes:
    """Check that ``path`` is an MP3 that decodes to ``seconds`` of audio; return its bytes."""
    data = path.read_bytes()
    assert data[:3] == b"ID3" or (data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
    assert media.audio_stream(path).startswith("mp3 ")
    assert media.probe_duration(path) == pytest.approx(seconds, abs=0.1)
    return data


# --- formats -----------------------------------------------------------------

FORMATS = [
    pytest.param("clip.mp4", {"faststart": True}, id="mp4-faststart"),
    pytest.param("clip.mp4", {}, id="mp4-moov-at-end"),
    pytest.param("clip.mov", {}, id="mov"),
    pytest.param("clip.webm", {"audio_codec": "libopus"}, id="webm-opus"),
    pytest.param("clip.webm", {"audio_codec": "libvorbis"}, id="webm-vorbis"),
    pytest.param("clip.avi", {"audio_codec": "pcm_s16le"}, id="avi-pcm"),
    pytest.param("clip.avi", {"audio_codec": "libmp3lame"}, id="avi-mp3"),
    pytest.param("clip.mkv", {"audio_codec": "libmp3lame"}, id="mkv-mp3"),
    pytest.param("clip.m4a", {"video": False}, id="m4a-audio-only"),
    pytest.param("clip.wav", {"video": False}, id="wav-audio-only"),
]


@pytest.mark.parametrize(("name", "make"), FORMATS)
def test_converts_each_format_to_an_mp3_of_the_same_length(
    tmp_path: Path, name: str, make: dict
) -> None:
    src = media.make_video(tmp_path / name, seconds=SECONDS, size=SMALL, **make)
    dst = tmp_path / "out.mp3"

    result = transcode(src, dst)

    source_seconds = media.probe_duration(src)
    assert_mp3(dst, seconds=source_seconds)
    assert result.duration == pytest.approx(source_seconds, abs=0.1)
    assert result.output_bytes == dst.stat().st_size
    assert result.stream_copied is (make.get("audio_codec") == "libmp3lame")
    assert result.elapsed > 0


def test_mp3_audio_is_copied_packet_for_packet(tmp_path: Path) -> None:
    src = media.make_video(tmp_path / "clip.mkv", size=SMALL, audio_codec="libmp3lame")
    dst = tmp_path / "out.mp3"

    result = transcode(src, dst)

    assert result.stream_copied
    assert media.audio_packet_hashes(dst) == media.audio_packet_hashes(src)


def test_default_is_192k_cbr_at_the_source_rate_and_channels(tmp_path: Path) -> None:
    src = media.make_video(tmp_path / "clip.mp4", size=SMALL, sample_rate=48000, channels=2)
    dst = tmp_path / "out.mp3"

    transcode(src, dst)

    stream = media.audio_stream(dst)
    assert "48000 Hz, stereo" in stream
    assert "192 kb/s" in stream
    # A CBR file's first frame is a LAME "Info" header; a VBR file's is "Xing".
    assert b"Info" in dst.read_bytes()[:2048]


def test_mp4_fixtures_put_the_index_where_the_tests_assume(tmp_path: Path) -> None:
    faststart = media.mp4_boxes(media.make_video(tmp_path / "a.mp4", size=SMALL, faststart=True))
    at_end = media.mp4_boxes(media.make_video(tmp_path / "b.mp4", size=SMALL))

    assert faststart.index("moov") < faststart.index("mdat")
    assert at_end.index("moov") > at_end.index("mdat")


# --- probe -------------------------------------------------------------------


def test_probe_describes_the_container_and_first_audio_stream(tmp_path: Path) -> None:
    src = media.make_video(
        tmp_path / "clip.mkv", size=SMALL, audio_codec="libmp3lame", sample_rate=48000, channels=1
    )

    info = probe(src)

    assert info.container == "matroska,webm"
    assert info.duration == pytest.approx(SECONDS, abs=0.1)
    assert info.has_video
    assert info.has_audio
    assert (info.audio_codec, info.audio_sample_rate, info.audio_channels) == ("mp3", 48000, 1)


def test_probe_of_pcm_audio_reads_its_exact_bitrate(tmp_path: Path) -> None:
    info = probe(media.make_audio(tmp_path / "tone.wav", sample_rate=22050, channels=1))

    assert info == MediaInfo(
        container="wav",
        duration=SECONDS,
        has_video=False,
        has_audio=True,
        audio_codec="pcm_s16le",
        audio_sample_rate=22050,
        audio_channels=1,
        audio_bitrate=352,
    )


def test_probe_without_requiring_audio_reports_its_absence(tmp_path: Path) -> None:
    info = probe(
        media.make_video(tmp_path / "silent.mp4", size=SMALL, audio_codec=None), require_audio=False
    )

    assert info.has_video
    assert not info.has_audio
    assert info.audio_codec is None


@pytest.mark.parametrize("name", ["clip.mkv", "clip.mp4"])
def test_probe_passes_over_subtitle_streams_quietly(tmp_path: Path, name: str) -> None:
    src = media.make_video(tmp_path / name, size=SMALL, subtitles=True)
    assert "Subtitle:" in media.describe(src)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = probe(src)

    assert info.has_audio
    assert info.duration == pytest.approx(SECONDS, abs=0.1)


def test_a_live_recording_without_a_duration_still_converts(tmp_path: Path) -> None:
    src = media.make_video(tmp_path / "live.webm", size=SMALL, seekable=False)
    dst = tmp_path / "out.mp3"
    reports: list[int] = []

    info = probe(src)
    transcode(src, dst, info=info, on_progress=reports.append)

    assert info.duration is None
    assert_mp3(dst, seconds=media.probe_duration(src))
    assert reports == [100]


# --- options -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (Options(bitrate=128), "128 kb/s"),
        (Options(bitrate=320), "320 kb/s"),
        (Options(sample_rate=22050), "22050 Hz"),
        (Options(channels=1), "mono"),
        (Options(sample_rate=16000, channels=1, bitrate=64), "16000 Hz, mono, fltp, 64 kb/s"),
    ],
)
def test_encoding_options_are_honoured(tmp_path: Path, options: Options, expected: str) -> None:
    src = media.make_video(tmp_path / "clip.mp4", size=SMALL)
    dst = tmp_path / "out.mp3"

    transcode(src, dst, options)

    assert expected in media.audio_stream(dst)
    assert_mp3(dst, seconds=SECONDS)


def test_an_explicit_bitrate_re_encodes_mp3_audio(tmp_path: Path) -> None:
    src = media.make_video(tmp_path / "clip.mkv", size=SMALL, audio_codec="libmp3lame")
    dst = tmp_path / "out.mp3"

    result = transcode(src, dst, Options(bitrate=96))

    assert not result.stream_copied
    assert "96 kb/s" in media.audio_stream(dst)


def test_vbr_quality_writes_a_vbr_header_and_trades_size(tmp_path: Path) -> None:
    src = media.make_video(tmp_path / "clip.mp4", size=SMALL)
    best, smallest = tmp_path / "q0.mp3", tmp_path / "q9.mp3"

    transcode(src, best, Options(quality=0))
    transcode(src, smallest, Options(quality=9))

    for path in (best, smallest):
        assert b"Xing" in assert_mp3(path, seconds=SECONDS)[:2048]
    assert smallest.stat().st_size < best.stat().st_size


@pytest.mark.parametrize(
    ("start", "end", "seconds"),
    [(1.0, None, 3.0), (None, 2.5, 2.5), (0.5, 2.5, 2.0), (1.5, 99.0, 2.5)],
)
@pytest.mark.parametrize("audio_codec", ["aac", "libmp3lame"])
def test_trim_cuts_exactly(
    tmp_path: Path, audio_codec: str, start: float | None, end: float | None, seconds: float
) -> None:
    src = media.make_video(tmp_path / "clip.mkv", seconds=4.0, size=SMALL, audio_codec=audio_codec)
    dst = tmp_path / "out.mp3"

    result = transcode(src, dst, Options(start=start, end=end))

    assert not result.stream_copied
    assert result.duration == pytest.approx(seconds, abs=0.1)
    assert_mp3(dst, seconds=seconds)


def decoded(path: Path) -> array.array:
    """Return a file's first audio stream decoded to 16-bit PCM samples."""
    completed = media.run_ffmpeg(
        "-loglevel", "error", "-i", path, "-map", "0:a:0", "-f", "s16le", "-"
    )
    return array.array("h", completed.stdout)


def test_the_clients_copy_of_a_videos_sound_trims_to_the_whole_videos_mp3(tmp_path: Path) -> None:
    # What the CLI sends for `--start 4.3 --end 7.5`: the AAC track copied out with a second
    # each side (an M4A whose every packet is a sync sample) and the trim shifted to match.
    video = media.make_video(tmp_path / "clip.mp4", seconds=12.0, size=SMALL, frequency=523)
    whole, copied = tmp_path / "whole.mp3", tmp_path / "copied.mp3"
    transcode(video, whole, Options(start=4.3, end=7.5))
    with soundtrack.extracted(video, {"start": "4.3", "end": "7.5"}) as track:
        assert track is not None
        assert track.codec == "aac"
        assert float(track.options.pop(soundtrack.CLIP_START)) > 3.3  # for the job's echo
        shifted = Options.from_dict(track.options)
        transcode(track.path, copied, shifted)

    expected, got = decoded(whole), decoded(copied)
    assert len(got) == len(expected)
    # Sample for sample the same sound: not shifted by the copy's first packet (some 900
    # samples off before), and no glitch where decoding starts (thousands of units off
    # before the converter decoded a second ahead of a trim). What is left is the encoder
    # hearing its first second through another packet's decoder state: a few units in 32768.
    assert max(abs(a - b) for a, b in zip(expected, got, strict=True)) <= 16


@pytest.mark.parametrize("audio_codec", ["aac", "libmp3lame"])
def test_id3_tags_are_written(tmp_path: Path, audio_codec: str) -> None:
    src = media.make_video(tmp_path / "clip.mkv", size=SMALL, audio_codec=audio_codec)
    dst = tmp_path / "out.mp3"
    tags = {"title": "Ünïcode — “quoted” ♪", "artist": "A = B; C #1", "album": "Back\\slash"}

    result = transcode(src, dst, Options(**tags))

    assert result.stream_copied is (audio_codec == "libmp3lame")
    assert dst.read_bytes()[:4] == b"ID3\x03"
    assert {key: media.read_tags(dst).get(key) for key in tags} == tags


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, Options()),
        ({}, Options()),
        ({"bitrate": "128"}, Options(bitrate=128)),
        ({"bitrate": 320.0, "channels": "1"}, Options(bitrate=320, channels=1)),
        ({"quality": 0, "sample_rate": 22050}, Options(quality=0, sample_rate=22050)),
        ({"start": "1:30", "end": "01:02:03.5"}, Options(start=90.0, end=3723.5)),
        ({"start": 0, "end": "12.25"}, Options(start=0.0, end=12.25)),
        ({"bitrate": "", "quality": None, "title": "  Song  "}, Options(title="Song")),
        ({"title": "   "}, Options()),
        ({"format": " FLAC "}, Options(format="flac")),
        ({"format": "mp3", "quality": "2"}, Options(format="mp3", quality=2)),
        ({"format": "m4a", "bitrate": "16"}, Options(format="m4a", bitrate=16)),
        ({"format": "m4a", "bitrate": "320"}, Options(format="m4a", bitrate=320)),
        ({"format": "opus", "bitrate": 6}, Options(format="opus", bitrate=6)),
        ({"format": "opus", "bitrate": "510"}, Options(format="opus", bitrate=510)),
        ({"format": "opus", "sample_rate": "8000"}, Options(format="opus", sample_rate=8000)),
        ({"format": "flac", "sample_rate": 22050}, Options(format="flac", sample_rate=22050)),
        ({"format": "wav", "channels": 1}, Options(format="wav", channels=1)),
        ({"format": ""}, Options()),
    ],
)
def test_options_from_dict_reads_json_and_form_values(raw: dict | None, expected: Options) -> None:
    options = Options.from_dict(raw)

    assert options == expected
    assert Options.from_dict(options.to_dict()) == options


def test_options_to_dict_holds_only_what_was_set() -> None:
    assert Options().to_dict() == {}
    assert Options(bitrate=128, end=5.0, title="x").to_dict() == {
        "bitrate": 128,
        "end": 5.0,
        "title": "x",
    }


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"bitrate": 100}, "bitrate"),
        ({"bitrate": "fast"}, "bitrate"),
        ({"bitrate": True}, "bitrate"),
        ({"bitrate": 128.5}, "bitrate"),
        ({"quality": 10}, "quality"),
        ({"quality": "-1"}, "quality"),
        ({"bitrate": 128, "quality": 2}, "quality"),
        ({"sample_rate": 96000}, "sample_rate"),
        ({"channels": 6}, "channels"),
        ({"channels": [2]}, "channels"),
        ({"start": -1}, "start"),
        ({"start": "soon"}, "start"),
        ({"start": "1:75"}, "start"),
        ({"start": 1e9}, "start"),
        ({"end": float("nan")}, "end"),
        ({"end": 0}, "end"),
        ({"start": 5, "end": 3}, "end"),
        ({"title": "x" * 201}, "title"),
        ({"artist": 5}, "artist"),
        ({"album": "a\x00b"}, "album"),
        ({"speed": 2}, "speed"),
        ({"format": "ogg"}, "format"),
        ({"format": 3}, "format"),
        ({"format": "m4a", "bitrate": 15}, "bitrate"),
        ({"format": "m4a", "bitrate": 321}, "bitrate"),
        ({"format": "m4a", "quality": 2}, "quality"),
        ({"format": "opus", "bitrate": 5}, "bitrate"),
        ({"format": "opus", "bitrate": 511}, "bitrate"),
        ({"format": "opus", "quality": 5}, "quality"),
        ({"format": "opus", "sample_rate": 44100}, "sample_rate"),
        ({"format": "opus", "channels": 3}, "channels"),
        ({"format": "flac", "bitrate": 192}, "bitrate"),
        ({"format": "flac", "quality": 0}, "quality"),
        ({"format": "flac", "sample_rate": 96000}, "sample_rate"),
        ({"format": "wav", "bitrate": 320}, "bitrate"),
        ({"format": "wav", "quality": 9}, "quality"),
        ({"format": "mp3", "bitrate": 6}, "bitrate"),
    ],
)
def test_invalid_options_are_permanent_errors_naming_the_field(raw: dict, field: str) -> None:
    with pytest.raises(PermanentError, match=f"'{field}'") as caught:
        Options.from_dict(raw)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"format": "flac", "bitrate": 192}, "'bitrate': FLAC is lossless: it takes no bitrate"),
        ({"format": "wav", "quality": 2}, "'quality': WAV is lossless: it takes no bitrate"),
        ({"format": "m4a", "quality": 2}, "'quality': M4A takes a bitrate, not a VBR quality"),
        ({"format": "opus", "bitrate": 511}, "from 6 to 510 for Opus, got 511"),
        ({"format": "opus", "sample_rate": 44100}, "8000, 12000, 16000, 24000, 48000 for Opus"),
        (
            {"bitrate": 100},
            "one of 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, got",
        ),
    ],
)
def test_a_format_refuses_what_its_encoder_does_not_take_in_words(raw: dict, message: str) -> None:
    with pytest.raises(PermanentError, match=re.escape(message)):
        Options.from_dict(raw)


def test_options_that_are_not_an_object_are_refused() -> None:
    with pytest.raises(PermanentError, match="invalid options"):
        Options.from_dict(["bitrate", 128])  # type: ignore[arg-type]


MP3_SOURCE = MediaInfo(
    container="matroska,webm",
    duration=10.0,
    has_video=True,
    has_audio=True,
    audio_codec="mp3",
    audio_sample_rate=44100,
    audio_channels=2,
)


@pytest.mark.parametrize(
    ("options", "info", "reencode"),
    [
        (Options(), MP3_SOURCE, False),
        (Options(title="t", artist="a", album="b"), MP3_SOURCE, False),
        (Options(sample_rate=44100, channels=2), MP3_SOURCE, False),
        (Options(bitrate=192), MP3_SOURCE, True),
        (Options(quality=4), MP3_SOURCE, True),
        (Options(sample_rate=22050), MP3_SOURCE, True),
        (Options(channels=1), MP3_SOURCE, True),
        (Options(start=1.0), MP3_SOURCE, True),
        (Options(end=5.0), MP3_SOURCE, True),
        (Options(), MediaInfo("mov,mp4,m4a,3gp,3g2,mj2", 10.0, True, True, "aac"), True),
        (Options(format="m4a"), MediaInfo("mov", 10.0, True, True, "aac"), False),
        (Options(format="m4a", bitrate=128), MediaInfo("mov", 10.0, True, True, "aac"), True),
        (Options(format="opus"), MediaInfo("webm", 10.0, True, True, "opus", 48000, 2), False),
        (
            Options(format="opus", sample_rate=24000),
            MediaInfo("webm", 10.0, True, True, "opus", 48000, 2),
            True,
        ),
        (Options(format="flac"), MediaInfo("flac", 10.0, False, True, "flac"), False),
        (Options(format="flac"), MP3_SOURCE, True),
        (Options(format="wav"), MediaInfo("wav", 10.0, False, True, "pcm_s16le"), False),
        (Options(format="wav"), MediaInfo("wav", 10.0, False, True, "pcm_f32le"), True),
        (Options(format="m4a"), MP3_SOURCE, True),
        (Options(format="opus"), MediaInfo("webm", 10.0, True, True, "vorbis"), True),
    ],
)
def test_stream_copy_only_when_nothing_asks_for_re_encoding(
    options: Options, info: MediaInfo, reencode: bool
) -> None:
    assert needs_reencode(options, info) is reencode


# --- output formats ----------------------------------------------------------

TAGS = {"title": "Ünïcode — “quoted” ♪", "artist": "A = B; C #1", "album": "Back\\slash"}
# format: (ffmpeg's container name, codec, where ffmpeg shows the tags, the raw tag block)
OUTPUTS = {
    "mp3": ("mp3", "mp3", None, b"ID3\x03"),
    "m4a": ("mov,mp4,m4a,3gp,3g2,mj2", "aac", None, b"ilst"),
    "opus": ("ogg", "opus", "a:0", b"OpusTags"),
    "flac": ("flac", "flac", None, b"fLaC"),
    "wav": ("wav", "pcm_s16le", None, b"INFO"),
}


@pytest.mark.parametrize(
    ("output", "options", "rate", "channels"),
    [
        ("mp3", {"bitrate": 128, "sample_rate": 22050}, 22050, 2),
        ("m4a", {"bitrate": 96, "channels": 1}, 44100, 1),
        # Opus decodes at 48 kHz whatever rate it was coded at.
        ("opus", {"bitrate": 64, "sample_rate": 24000, "channels": 1}, 48000, 1),
        ("flac", {"sample_rate": 48000}, 48000, 2),
        ("wav", {"channels": 1, "sample_rate": 16000}, 16000, 1),
    ],
)
def test_each_output_format_is_encoded_with_its_codec_container_and_tags(
    tmp_path: Path, output: str, options: dict, rate: int, channels: int
) -> None:
    src = media.make_video(tmp_path / "clip.webm", size=SMALL, audio_codec="libvorbis")
    dst = tmp_path / f"out.{output}"
    container, codec, tag_stream, tag_block = OUTPUTS[output]

    result = transcode(src, dst, Options(format=output, **options, **TAGS))

    assert not result.stream_copied
    assert f"Input #0, {container}, from" in media.describe(dst)
    stream = media.audio_stream(dst)
    assert re.match(rf"{codec}\b", stream)
    assert f"{rate} Hz, {'mono' if channels == 1 else 'stereo'}" in stream
    assert media.probe_duration(dst) == pytest.approx(SECONDS, abs=0.1)
    tags = media.read_tags(dst, stream=tag_stream)
    assert {key: tags.get(key) for key in TAGS} == TAGS
    assert "duration" not in tags  # the WebM stream's own tag stays behind
    assert tag_block in dst.read_bytes()[:4096]


def test_m4a_is_an_itunes_audio_file_with_its_index_first(tmp_path: Path) -> None:
    src = media.make_video(tmp_path / "clip.webm", size=SMALL, audio_codec="libvorbis")
    dst = tmp_path / "out.m4a"

    transcode(src, dst, Options(format="m4a"))

    assert media.read_tags(dst)["major_brand"] == "M4A "
    boxes = media.mp4_boxes(dst)
    assert boxes[0] == "ftyp"
    assert boxes.index("moov") < boxes.index("mdat")


@pytest.mark.parametrize(
    ("name", "audio_codec", "output"),
    [
        ("clip.mkv", "aac", "m4a"),
        ("clip.mp4", "aac", "m4a"),
        ("clip.webm", "libopus", "opus"),
        ("clip.mkv", "libmp3lame", "mp3"),
        ("clip.mkv", "flac", "flac"),
    ],
)
def test_the_sources_codec_is_copied_into_the_same_format(
    tmp_path: Path, name: str, audio_codec: str, output: str
) -> None:
    src = media.make_video(tmp_path / name, size=SMALL, audio_codec=audio_codec)
    dst = tmp_path / f"out.{output}"

    result = transcode(src, dst, Options(format=output, title="Copied"))

    assert result.stream_copied
    assert media.audio_packet_hashes(dst) == media.audio_packet_hashes(src)
    assert f"Input #0, {OUTPUTS[output][0]}, from" in media.describe(dst)
    assert media.read_tags(dst, stream=OUTPUTS[output][2])["title"] == "Copied"
    assert media.probe_duration(dst) == pytest.approx(SECONDS, abs=0.1)


@pytest.mark.parametrize(
    ("output", "options"),
    [("m4a", {"bitrate": 96}), ("opus", {"channels": 1}), ("flac", {"start": 1.0})],
)
def test_an_option_that_changes_the_sound_re_encodes_a_copyable_source(
    tmp_path: Path, output: str, options: dict
) -> None:
    codec = {"m4a": "aac", "opus": "libopus", "flac": "flac"}[output]
    src = media.make_video(tmp_path / "clip.mkv", size=SMALL, audio_codec=codec)
    dst = tmp_path / f"out.{output}"

    result = transcode(src, dst, Options(format=output, **options))

    assert not result.stream_copied
    assert media.audio_packet_hashes(dst) != media.audio_packet_hashes(src)
    assert media.audio_stream(dst).startswith(OUTPUTS[output][1])


def test_the_size_bound_follows_the_format() -> None:
    """The shipped 6-hour limit: 48 kHz stereo WAV may take 4 bytes per sample, Opus 510 kbit/s."""
    info = MediaInfo("matroska,webm", 6 * 3600.0, True, True, "vorbis", 48000, 2, 160)
    six_hours = 21_600

    assert conversion_limits(info, Options()).output_bytes == six_hours * 40_000 + 1024**2
    assert conversion_limits(info, Options(format="wav")).output_bytes == (
        six_hours * 48_000 * 2 * 4 + 1024**2
    )
    assert conversion_limits(info, Options(format="flac", channels=1)).output_bytes == (
        six_hours * 48_000 * 4 + 1024**2
    )
    assert conversion_limits(info, Options(format="opus")).output_bytes == (
        six_hours * 510_000 // 8 + 1024**2
    )
    loud = dataclasses.replace(info, audio_codec="aac", audio_bitrate=512)
    assert conversion_limits(loud, Options(format="m4a")).output_bytes == (
        six_hours * 512_000 // 8 + 1024**2
    )
    # Re-encoded, the source's bitrate no longer counts: ours is at most 320 kbit/s.
    assert conversion_limits(loud, Options(format="m4a", channels=1)).output_bytes == (
        six_hours * 320_000 // 8 + 1024**2
    )


# --- bad input ---------------------------------------------------------------


def random_bytes(path: Path) -> Path:
    path.write_bytes(random.Random(0).randbytes(100_000))
    return path


def text_file(path: Path) -> Path:
    path.write_text("Dear converter, this is not a video.\n" * 100)
    return path


def truncated(faststart: bool) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        whole = media.make_video(
            path.with_name("whole.mp4"), seconds=4.0, size=SMALL, faststart=faststart
        )
        return media.truncate(whole, path, fraction=0.5)

    return make


def no_audio(path: Path) -> Path:
    return media.make_video(path, size=SMALL, audio_codec=None)


def unknown_audio_codec(path: Path) -> Path:
    wav = bytearray(media.make_audio(path.with_name("tone.wav")).read_bytes())
    wav[20:22] = b"\x99\x99"  # the WAVE format tag: a codec no decoder knows
    path.write_bytes(wav)
    return path


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("random.mp4", random_bytes, r"^not a recognised audio/video file$"),
        ("video", random_bytes, r"^not a recognised audio/video file$"),
        ("notes.mp4", text_file, r"^not a recognised audio/video file$"),
        (
            "cut.mp4",
            truncated(faststart=True),
            r"^the file is truncated or corrupt: got [01]\.\d s of audio from a 4\.0 s video$",
        ),
        (
            "cut-index-at-end.mp4",
            truncated(faststart=False),
            r"^the file is truncated or corrupt: its MP4/MOV index \(moov atom\) is missing$",
        ),
        ("silent.mp4", no_audio, r"^the video has no audio track$"),
        ("odd.wav", unknown_audio_codec, r"^ffmpeg could not convert the file: .*no decoder found"),
    ],
)
def test_bad_input_is_a_permanent_error_with_a_readable_reason(
    tmp_path: Path, name: str, make: Callable[[Path], Path], reason: str
) -> None:
    src = make(tmp_path / name)
    dst = tmp_path / "out.mp3"

    with pytest.raises(PermanentError, match=reason):
        transcode(src, dst)

    assert not dst.exists()


def test_a_trim_past_the_end_is_a_permanent_error(tmp_path: Path) -> None:
    src = media.make_video(tmp_path / "clip.mp4", size=SMALL)

    with pytest.raises(PermanentError, match=r"trim start \(10 s\) is past the end of the 3\.0 s"):
        transcode(src, tmp_path / "out.mp3", Options(start=10))


# --- the machine, not the file -------------------------------------------------


def test_a_missing_ffmpeg_binary_is_transient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = media.make_video(tmp_path / "clip.mp4", size=SMALL)
    info = probe(src)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-such-ffmpeg"))

    with pytest.raises(TransientError, match="cannot run ffmpeg"):
        probe(src)
    with pytest.raises(TransientError, match="cannot run ffmpeg"):
        transcode(src, tmp_path / "out.mp3", info=info)


def test_a_missing_input_file_is_transient(tmp_path: Path) -> None:
    with pytest.raises(TransientError, match="missing"):
        transcode(tmp_path / "gone.mp4", tmp_path / "out.mp3")


def test_an_unwritable_output_is_transient(tmp_path: Path) -> None:
    src = media.make_video(tmp_path / "clip.mp4", size=SMALL)

    with pytest.raises(TransientError, match="No such file or directory"):
        transcode(src, tmp_path / "no-such-dir" / "out.mp3")


@pytest.mark.parametrize(
    ("signum", "reason"),
    [(signal.SIGKILL, "killed by SIGKILL"), (signal.SIGTERM, "interrupted by a signal")],
    ids=["SIGKILL", "SIGTERM"],
)
def test_ffmpeg_stopped_by_someone_else_is_transient(
    tmp_path: Path, long_wav: Path, fast_progress: None, signum: int, reason: str
) -> None:
    dst = tmp_path / "out.mp3"

    def stop_ffmpeg(percent: int) -> None:
        for pid in ffmpeg_children():
            os.kill(pid, signum)

    with pytest.raises(TransientError, match=reason):
        transcode(long_wav, dst, on_progress=stop_ffmpeg)

    assert not dst.exists()


# --- progress and cancel -----------------------------------------------------


def test_progress_rises_to_100(tmp_path: Path, fast_progress: None) -> None:
    src = media.make_audio(tmp_path / "tone.wav", seconds=120)
    reports: list[int] = []

    transcode(src, tmp_path / "out.mp3", on_progress=reports.append)

    assert len(reports) >= 3
    assert reports == sorted(set(reports))
    assert all(0 < percent < 100 for percent in reports[:-1])
    assert reports[-1] == 100


def test_cancel_kills_ffmpeg_at_once_and_removes_the_output(
    tmp_path: Path, long_wav: Path, fast_progress: None
) -> None:
    dst = tmp_path / "out.mp3"
    cancel = threading.Event()
    reports: list[int] = []
    cancelled_at: list[float] = []

    def cancel_on_first_report(percent: int) -> None:
        reports.append(percent)
        if not cancel.is_set():
            cancelled_at.append(time.monotonic())
            cancel.set()

    with pytest.raises(TransientError, match=r"^conversion interrupted$"):
        transcode(long_wav, dst, on_progress=cancel_on_first_report, cancel=cancel)

    assert time.monotonic() - cancelled_at[0] < 1.0
    assert max(reports) < 100
    assert not dst.exists()


def test_cancel_set_before_the_start_runs_nothing(tmp_path: Path) -> None:
    src = media.make_video(tmp_path / "clip.mp4", size=SMALL)
    dst = tmp_path / "out.mp3"
    cancel = threading.Event()
    cancel.set()

    with pytest.raises(TransientError, match=r"^conversion interrupted$"):
        transcode(src, dst, cancel=cancel)

    assert not dst.exists()


def test_a_failing_progress_callback_stops_ffmpeg(
    tmp_path: Path, long_wav: Path, fast_progress: None
) -> None:
    dst = tmp_path / "out.mp3"
    failed_at: list[float] = []

    def store_down(percent: int) -> None:
        failed_at.append(time.monotonic())
        raise TransientError("job store unreachable")

    with pytest.raises(TransientError, match="job store unreachable") as raised:
        transcode(long_wav, dst, on_progress=store_down)

    assert time.monotonic() - failed_at[0] < 1.0
    # Checked while ``raised`` still holds the frames, so an unreaped
    # process cannot hide by being collected first.
    assert raised.value is not None
    assert ffmpeg_children() == []
    assert not dst.exists()


# --- the waveform measured in the conversion's run ----------------------------


def test_a_re_encode_measures_its_waveform_unless_told_not_to(tmp_path: Path) -> None:
    src = media.make_video(tmp_path / "clip.mp4", size=SMALL)
    measured, bare = tmp_path / "measured.mp3", tmp_path / "bare.mp3"

    with_waveform = transcode(src, measured)
    without = transcode(src, bare, waveform=False)

    assert with_waveform.waveform is not None
    assert with_waveform.waveform.duration == pytest.approx(SECONDS, abs=0.05)
    assert without.waveform is None
    # The branch changes nothing the encoder gets.
    assert decoded(measured) == decoded(bare)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "bare.mp3",
        "clip.mp4",
        "measured.mp3",
    ]


@pytest.mark.parametrize(
    ("make", "options"),
    [
        pytest.param(
            lambda path: media.make_video(path / "clip.mkv", audio_codec="libmp3lame"),
            Options(),
            id="stream-copy",
        ),
        pytest.param(
            lambda path: media.make_video(path / "live.webm", size=SMALL, seekable=False),
            Options(),
            id="unknown-length",
        ),
        # libmp3lame mixes six channels down to two after the split: only -ac says so.
        pytest.param(
            lambda path: media.make_video(path / "surround.mkv", size=SMALL, channels=6),
            Options(),
            id="5.1-to-mp3",
        ),
    ],
)
def test_the_waveform_is_left_to_a_pass_where_the_run_cannot_measure_it(
    tmp_path: Path, make: Callable[[Path], Path], options: Options
) -> None:
    src = make(tmp_path)
    dst = tmp_path / "out.mp3"

    result = transcode(src, dst, options)

    assert result.waveform is None
    assert sorted(tmp_path.iterdir()) == sorted([src, dst])


def test_surround_sound_mixed_to_a_set_channel_count_is_measured_in_the_run(
    tmp_path: Path,
) -> None:
    src = media.make_video(tmp_path / "surround.mkv", size=SMALL, channels=6)

    result = transcode(src, tmp_path / "out.mp3", Options(channels=2))

    assert result.waveform is not None
    assert result.waveform.points == 200


def test_a_cancelled_conversion_leaves_no_waveform_listing(
    tmp_path: Path, long_wav: Path, fast_progress: None
) -> None:
    cancel = threading.Event()

    with pytest.raises(TransientError, match=r"^conversion interrupted$"):
        transcode(long_wav, tmp_path / "out.mp3", on_progress=lambda _: cancel.set(), cancel=cancel)

    assert list(tmp_path.iterdir()) == []
