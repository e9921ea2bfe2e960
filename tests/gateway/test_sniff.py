"""Container sniffing on the first bytes of real and fake files."""

from __future__ import annotations

import os

import pytest

from gateway.sniff import sniff_container


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x00\x00\x00\x18ftypmp42", "mp4"),
        (b"\x00\x00\x00\x14ftypqt  ", "mp4"),
        (b"\x00\x00\x00\x08wide\x00\x00", "mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "matroska"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", "avi"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"FLV\x01\x05", "flv"),
        (b"OggS\x00\x02", "ogg"),
        (b"fLaC\x00\x00", "flac"),
        (b"ID3\x04\x00\x00", "mp3"),
        (b"\xff\xfb\x90\x64", "mpeg-audio"),
        (b"\x00\x00\x01\xba\x44", "mpeg-ps"),
        (b"\x47" + b"\x00" * 187 + b"\x47" + b"\x00" * 187 + b"\x47", "mpeg-ts"),
        (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9", "asf"),
    ],
)
def test_known_containers(head, expected):
    assert sniff_container(head) == expected


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
    ],
)
def test_non_media(head):
    assert sniff_container(head) is None


def test_random_bytes_are_almost_never_media():
    hits = sum(sniff_container(os.urandom(512)) is not None for _ in range(2000))
    assert hits < 10  # only a chance MPEG-audio frame sync (1 in 2048) may match
