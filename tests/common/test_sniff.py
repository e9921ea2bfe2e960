"""Container sniffing on the first bytes of real files, forged headers and text."""

from __future__ import annotations

import os

import pytest

from common.sniff import SNIFF_BYTES, sniff_container
from tests.support.media import make_video, run_ffmpeg

FTYP_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
EBML_WEBM = bytes.fromhex("1a45dfa39f4286810142f7810142f2810442f381084282847765626d42878104428581")


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (FTYP_MP4 + b"\x00\x00\x00\x08free", "mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ", "mp4"),
        (b"\x00\x00\x00\x08wide\x00\x01\x00\x00mdat", "mp4"),
        (b"\x00\x00\x00\x01mdat\x00\x00\x00\x01\x00\x00\x00\x00" + bytes(range(256)), "mp4"),
        (EBML_WEBM + b"\x18\x53\x80\x67", "matroska"),
        (b"RIFF\x24\x00\x00\x00AVI LIST\x00\x10\x00\x00hdrl", "avi"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", "wav"),
        (b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00", "flv"),
        (b"OggS\x00\x02" + b"\x00" * 21 + b"\x01\x1e\x01vorbis", "ogg"),
        (b"fLaC\x00\x00\x00\x22" + b"\x10" * 34, "flac"),
        (
            b"ID3\x04\x00\x00\x00\x00\x00\x0fTSSE\x00\x00\x00\x05\x00\x00\x03Lavf\xff\xfb\x90\x64",
            "mp3",
        ),
        (b"\xff\xfb\x90\x64" + b"\x00" * 413 + b"\xff\xfb\x90\x64\x00\x00", "mpeg-audio"),
        (b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x21" * 9 + b"\xff\xf1\x50\x80", "mpeg-audio"),
        (b"\x00\x00\x01\xba\x44\x00\x04\x00\x04\x01", "mpeg-ps"),
        ((b"\x47\x40\x00\x10" + b"\x00" * 184) * 3 + b"\x47", "mpeg-ts"),
        (
            bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
            + b"\x00\x10"
            + b"\x00" * 10
            + b"\x01\x02",
            "asf",
        ),
    ],
)
def test_known_containers(head, expected):
    assert sniff_container(head) == expected


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("clip.mp4", {}),
        ("fast.mp4", {"faststart": True}),
        ("clip.mov", {}),
        ("clip.3gp", {"container": "3gp", "audio_codec": "aac"}),
        ("tone.m4a", {"video": False}),
        ("clip.mkv", {}),
        ("clip.webm", {}),
        ("live.webm", {"seekable": False}),
        ("clip.avi", {}),
        ("clip.flv", {"container": "flv", "audio_codec": "aac"}),
        ("clip.wmv", {"container": "asf", "video_codec": "wmv2", "audio_codec": "wmav2"}),
        ("clip.mpg", {"container": "mpeg", "video_codec": "mpeg2video", "audio_codec": "mp2"}),
        ("clip.ts", {"container": "mpegts", "audio_codec": "aac"}),
        ("clip.m2ts", {"container": "mpegts", "audio_codec": "aac"}),
        ("clip.ogv", {"container": "ogg", "video_codec": "libtheora", "audio_codec": "libvorbis"}),
        ("tone.wav", {"video": False}),
        ("tone.mp3", {"video": False}),
        ("tone.flac", {"video": False}),
        ("tone.ogg", {"video": False}),
        ("tone.opus", {"video": False, "container": "ogg", "audio_codec": "libopus"}),
        ("tone.aac", {"video": False, "container": "adts", "audio_codec": "aac"}),
        ("tone.mp2", {"video": False, "container": "mp2", "audio_codec": "mp2"}),
        ("tone.aiff", {"video": False, "container": "aiff", "audio_codec": "pcm_s16be"}),
        ("tone.caf", {"video": False, "container": "caf", "audio_codec": "pcm_s16le"}),
    ],
)
def test_every_container_ffmpeg_writes_is_recognised(tmp_path, name, options):
    source = make_video(tmp_path / name, seconds=1, **options)
    assert sniff_container(source.read_bytes()[:SNIFF_BYTES]) is not None


@pytest.mark.parametrize(
    ("id3_version", "extra"),
    [("0", []), ("3", ["-metadata", "title=Hello"]), ("4", ["-metadata", "artist=Somebody"])],
    ids=["no-tag", "id3v2.3", "id3v2.4"],
)
def test_mp3s_with_and_without_tags_are_recognised(tmp_path, id3_version, extra):
    path = tmp_path / "tone.mp3"
    tone = ["-f", "lavfi", "-i", "sine=duration=1"]
    run_ffmpeg("-loglevel", "error", *tone, "-id3v2_version", id3_version, *extra, str(path))
    assert sniff_container(path.read_bytes()) in ("mp3", "mpeg-audio")


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello world, this is text",
        b"%PDF-1.7\n",
        b"\x89PNG\r\n\x1a\n",
        b"PK\x03\x04",
        b"GIF89a",
        b"Go away" * 80,
        b"<html><body>",
        # text that starts like a container: never media, whatever its first bytes
        b"<!--free--><?xml version='1.0'?><MPD/>",
        b"<!--ftyp-->" + b"mp42" * 20,
        b"abcdmdat and more text",
        b"ID3 tags are metadata",
        b"ID3\x03\x00\x00\x00\x00\x00\x10" + b"This is text after a forged tag header" * 4,
        b"RIFFsizeWAVEfmt text",
        b"RIFF\x24\x00\x00\x00WAVEdata\x00\x00\x00\x00",  # data before its format
        b"OggS: a page header spelled out",
        b"fLaC, a codec",
        b"FLV\x01 text",
        b"#!AMR\nnot speech",
        b"FORMsizeAIFFCOMMtext",
        "\ufeffUTF-16 text".encode("utf-16-le") * 20,
        "ÿû latin-1 text".encode("latin-1") * 20,
        # forged but impossible headers
        b"\x00\x00\x00\x00ftypmp42",  # an ftyp running to the end of the file
        b"\x00\x10\x00\x00ftypmp42\x00\x00\x00\x00",  # a 1 MiB ftyp
        b"\x00\x00\x00\x18ftyp\x01\x02\x03\x04\x00\x00\x00\x00",  # a brand that is no text
        b"ID3\x09\x00\x00\x00\x00\x00\x10",  # ID3v2.9
        b"ID3\x04\x00\x00\x00\x80\x00\x10",  # a size that is not synchsafe
        b"ID3\x04\x00\x01\x00\x00\x00\x10",  # an undefined flag
        b"\x1a\x45\xdf\xa3\x84\x42\x82\x81\x61",  # EBML with a DocType that is not Matroska
        b"\xff\xfb\x90\x64" + b"\x00" * 413 + b"tail" * 4,  # one frame, then no second one
    ],
)
def test_non_media(head):
    assert sniff_container(head) is None


def test_random_bytes_are_almost_never_media():
    hits = sum(sniff_container(os.urandom(SNIFF_BYTES)) is not None for _ in range(2000))
    assert hits < 3  # a chance MPEG audio frame must be followed by a second one
