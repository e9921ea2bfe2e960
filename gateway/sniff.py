"""Recognise audio/video containers from their first bytes.

A cheap first check at upload time: anything that starts like no known
container is refused with 415 before it is stored. It cannot tell a corrupt or
silent video from a good one; the converter's probe does that and fails the
job with a reason.
"""

from __future__ import annotations

# How many leading bytes ``sniff_container`` wants to see to decide.
SNIFF_BYTES = 512

# ISO base media (MP4, MOV, M4A, 3GP) files start with a box whose type is one
# of these at offset 4; QuickTime files may start with any top-level atom.
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp")


def sniff_container(head: bytes) -> str | None:
    """Return the container family the bytes start like, or None if none matches."""
    if len(head) >= 8 and head[4:8] in _ISO_BOXES:
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"  # MKV and WebM
    if head.startswith(b"RIFF") and head[8:12] in (b"AVI ", b"WAVE", b"AVIX"):
        return "avi" if head[8:11] == b"AVI" else "wav"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"  # WMV, WMA
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "mpeg-ps"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "mpeg-ts"  # 188-byte packets, each starting with the 0x47 sync byte
    if head.startswith(b"ID3"):
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "mpeg-audio"  # MP3 or ADTS AAC frame sync
    if head.startswith((b"#!AMR", b"caff", b"FORM")):
        return "audio"
    return None
