"""Recognise audio/video containers from their first bytes.

A cheap first check before a video is stored: an upload that does not start like
a known container is refused with 415 (gateway.uploads, gateway.resumable), and a
video imported by URL fails its job (converter.fetch). Each family is recognised
by its real header, not by a magic prefix alone: the fields around the magic
must hold values the format allows (an ISO box's size, an ID3 tag's version,
flags and synchsafe size, an MPEG audio frame's header and the frame after it,
a RIFF or AIFF file's first chunk, ...). Text is never media: a file whose
first bytes are text (``<!--free-->``, ``ID3 tags are...``) is refused however
it begins. The sniff cannot tell a corrupt or silent video from a good one;
the converter's probe does that and fails the job with a reason.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

# How many leading bytes ``sniff_container`` wants to see to decide, and the most
# it looks at: the same window whatever pieces the bytes arrived in.
SNIFF_BYTES = 4096

# Bytes that never occur in text (C0 controls other than TAB, LF, FF, CR and ESC; DEL).
_NON_TEXT = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
# A box type, chunk id or brand: four printable ASCII characters.
_FOURCC = re.compile(rb"[\x20-\x7e]{4}")
_ID3_FRAME_ID = {2: re.compile(rb"[A-Z0-9]{3}"), 3: re.compile(rb"[A-Z0-9]{4}")}

# ISO base media (MP4, MOV, M4A, 3GP): the top-level boxes a file may start with.
# QuickTime files may start with a wide/free/skip atom or with the data itself.
_ISO_FIRST_BOXES = (b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")
# An ftyp box is a major brand, a minor version and a few compatible brands: real
# ones are tens of bytes, so anything beyond this is no ftyp.
_MAX_FTYP_BYTES = 1024
# The padding and preview atoms that may come before the media are small.
_MAX_LEADING_BOX_BYTES = 1024**2
# Chunks before a RIFF/AIFF file's media data (format, header lists, padding) are small;
# four bytes of text read as a size are at least 0x09090909 (151 MiB).
_MAX_LEADING_CHUNK_BYTES = 16 * 1024**2

_ASF_HEADER_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_MATROSKA_DOCTYPES = (b"matroska", b"webm")
_EBML_DOCTYPE_ID = 0x4282

# MPEG audio bitrates in kbit/s by (version is MPEG-1, layer) and index 1..14.
_BITRATES = {
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def sniff_container(head: bytes) -> str | None:
    """Return the container family the bytes start like, or None if none matches."""
    head = head[:SNIFF_BYTES]
    if _is_text(head):
        return None
    for family, matches in _FAMILIES:
        if matches(head):
            return family
    return None


def _is_text(head: bytes) -> bool:
    """Tell whether the bytes read as text: UTF-8 (or UTF-16 after its BOM) without controls.

    Every container's header holds binary fields (sizes with zero high bytes, version
    bytes, GUIDs) within its first few bytes, so real media never reads as text.
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # a UTF-16 byte order mark
        encoding = "utf-16-le" if head[0] == 0xFF else "utf-16-be"
        text = head[2 : len(head) - len(head) % 2].decode(encoding, errors="replace")
        return "\ufffd" not in text and not _NON_TEXT.search(text.encode("utf-8"))
    if _NON_TEXT.search(head):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut off by the end of the window is still text.
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True


def _u32be(data: bytes, offset: int) -> int:
    return struct.unpack_from(">I", data, offset)[0]


def _u32le(data: bytes, offset: int) -> int:
    return struct.unpack_from("<I", data, offset)[0]


# --- ISO base media -----------------------------------------------------------------


def _iso_box(head: bytes, offset: int) -> tuple[bytes, int | None, int] | None:
    """Read a box header at ``offset``: (type, size or None when it runs to the end, header size).

    A size of 1 means a 64-bit size follows the type; 0 means the box runs to the end
    of the file. Returns None when the header is not in ``head`` or is impossible.
    """
    if len(head) < offset + 8:
        return None
    size, kind = _u32be(head, offset), head[offset + 4 : offset + 8]
    if not _FOURCC.fullmatch(kind):
        return None
    if size == 1:
        if len(head) < offset + 16:
            return None
        size = struct.unpack_from(">Q", head, offset + 8)[0]
        return (kind, size, 16) if size >= 16 else None
    if size == 0:
        return kind, None, 8
    return (kind, size, 8) if size >= 8 else None


def _is_iso_media(head: bytes) -> bool:
    box = _iso_box(head, 0)
    if box is None or box[0] not in _ISO_FIRST_BOXES:
        return False
    kind, size, header = box
    if size is None:
        return False  # a first box that runs to the end of the file leaves no room for media
    if kind in (b"ftyp", b"styp"):
        return _is_ftyp(head, size, header)
    if kind in (b"free", b"skip", b"wide", b"pnot"):
        # Padding or a preview before the media: small, and followed by another box.
        return size <= _MAX_LEADING_BOX_BYTES and (
            len(head) < size + 8 or _iso_box(head, size) is not None
        )
    if kind == b"moov":
        # The index first: its first child box (mvhd) must fit inside it.
        child = _iso_box(head, header)
        return child is not None and child[1] is not None and child[1] <= size - header
    return True  # mdat: media data first, as old QuickTime files have it


def _is_ftyp(head: bytes, size: int, header: int) -> bool:
    # major brand, minor version, then compatible brands of four bytes each
    if header != 8 or not 16 <= size <= _MAX_FTYP_BYTES or size % 4:
        return False
    if len(head) < 16 or not _FOURCC.fullmatch(head[8:12]):
        return False
    brands = head[16 : min(size, len(head))]
    return all(
        _FOURCC.fullmatch(brands[at : at + 4]) or brands[at : at + 4] == b"\x00" * 4
        for at in range(0, len(brands) - len(brands) % 4, 4)
    )


# --- Matroska / WebM ------------------------------------------------------------------


def _ebml_vint(data: bytes, offset: int, *, keep_marker: bool) -> tuple[int, int] | None:
    """Read an EBML variable-length integer: (value, its length in bytes), or None."""
    if offset >= len(data) or data[offset] == 0:
        return None
    length = 9 - data[offset].bit_length()
    if offset + length > len(data):
        return None
    value = int.from_bytes(data[offset : offset + length], "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
    return value, length


def _is_matroska(head: bytes) -> bool:
    """An EBML header whose DocType is matroska or webm, all within the first bytes."""
    if not head.startswith(b"\x1a\x45\xdf\xa3"):
        return False
    header_size = _ebml_vint(head, 4, keep_marker=False)
    if header_size is None:
        return False
    start = 4 + header_size[1]
    end = start + header_size[0]
    if end > len(head):
        return False  # a real EBML header is a few dozen bytes
    offset = start
    while offset < end:
        element = _ebml_vint(head, offset, keep_marker=True)
        if element is None:
            return False
        size = _ebml_vint(head, offset + element[1], keep_marker=False)
        if size is None:
            return False
        data_start = offset + element[1] + size[1]
        offset = data_start + size[0]
        if offset > end:
            return False
        if element[0] == _EBML_DOCTYPE_ID:
            return head[data_start:offset].rstrip(b"\x00") in _MATROSKA_DOCTYPES
    return False


# --- RIFF (AVI, WAV) and AIFF ---------------------------------------------------------


def _riff_family(head: bytes) -> str | None:
    if len(head) < 20 or not head.startswith(b"RIFF"):
        return None
    form = head[8:12]
    family = {b"AVI ": "avi", b"AVIX": "avi", b"WAVE": "wav"}.get(form)
    if family is None:
        return None
    first_chunk, first_size = head[12:16], _u32le(head, 16)
    if not _FOURCC.fullmatch(first_chunk) or first_chunk == b"data":
        return None  # the format (fmt, hdrl) comes before the data
    # The RIFF size is not checked: a WAV written to a pipe never gets its real size.
    return family if first_size <= _MAX_LEADING_CHUNK_BYTES else None


def _is_aiff(head: bytes) -> bool:
    if len(head) < 20 or not head.startswith(b"FORM") or head[8:12] not in (b"AIFF", b"AIFC"):
        return False
    first_chunk, first_size = head[12:16], _u32be(head, 16)
    return bool(_FOURCC.fullmatch(first_chunk)) and first_size <= _MAX_LEADING_CHUNK_BYTES


# --- MPEG audio, ADTS and ID3 ---------------------------------------------------------


def _audio_frame(head: bytes, offset: int) -> int | None:
    """Check an MPEG audio or ADTS frame header at ``offset``; return the frame's length.

    The length is 0 when it cannot be told (free-format bitrate). Returns None when
    there is no valid frame header there.
    """
    if len(head) < offset + 4:
        return None
    b1, b2, b3 = head[offset + 1 : offset + 4]
    if head[offset] != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version, layer = (b1 >> 3) & 0x03, (b1 >> 1) & 0x03
    if layer == 0:  # ADTS (AAC): a 12-bit sync, layer always 0
        if b1 & 0xF6 != 0xF0 or len(head) < offset + 6 or (b2 >> 2) & 0x0F > 12:
            return None
        frame = ((b3 & 0x03) << 11) | (head[offset + 4] << 3) | (head[offset + 5] >> 5)
        return frame if frame >= 7 else None
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 0x03
    if version == 1 or bitrate_index == 0x0F or rate_index == 3 or b3 & 0x03 == 2:
        return None
    if bitrate_index == 0:
        return 0  # free format
    layer_number = 4 - layer
    mpeg1 = version == 3
    table = (mpeg1, layer_number) if mpeg1 or layer_number == 1 else (False, 2)
    bitrate = _BITRATES[table][bitrate_index - 1] * 1000
    sample_rate = _SAMPLE_RATES[version][rate_index]
    padding = (b2 >> 1) & 0x01
    if layer_number == 1:
        return (12 * bitrate // sample_rate + padding) * 4
    per_frame = 144 if mpeg1 or layer_number == 2 else 72
    return per_frame * bitrate // sample_rate + padding


def _starts_audio_frames(head: bytes, offset: int = 0) -> bool:
    """An audio frame header at ``offset`` and, if within the window, another after it."""
    length = _audio_frame(head, offset)
    if length is None:
        return False
    following = offset + length
    return not length or len(head) < following + 6 or _audio_frame(head, following) is not None


def _id3_end(head: bytes, offset: int = 0) -> int | None:
    """Check an ID3v2 tag at ``offset``; return where it ends, or None if it is no tag.

    The header must have a known version, only defined flags and a synchsafe size; the
    frames within the window must have frame ids (or be padding).
    """
    if len(head) < offset + 10 or head[offset : offset + 3] != b"ID3":
        return None
    version, revision, flags = head[offset + 3 : offset + 6]
    size_bytes = head[offset + 6 : offset + 10]
    if version not in (2, 3, 4) or revision == 0xFF or any(b & 0x80 for b in size_bytes):
        return None
    if flags & {2: 0x3F, 3: 0x1F, 4: 0x0F}[version]:
        return None
    size = int.from_bytes(bytes(b & 0x7F for b in size_bytes), "big")  # 7 bits a byte
    end = offset + 10 + size + (10 if flags & 0x10 else 0)
    if flags & 0xC0:
        return end  # unsynchronised, compressed or extended: the frames are not where we look
    id_length, header_length = (3, 6) if version == 2 else (4, 10)
    frame = offset + 10
    while frame + header_length <= min(offset + 10 + size, len(head)):
        frame_id = head[frame : frame + id_length]
        if frame_id == b"\x00" * id_length:
            break  # padding up to the end of the tag
        if not _ID3_FRAME_ID[min(version, 3)].fullmatch(frame_id):
            return None
        raw = head[frame + id_length : frame + id_length + (3 if version == 2 else 4)]
        if version == 4:
            if any(b & 0x80 for b in raw):
                return None
            frame_size = int.from_bytes(bytes(b & 0x7F for b in raw), "big")
        else:
            frame_size = int.from_bytes(raw, "big")
        frame += header_length + frame_size
        if frame > offset + 10 + size:
            return None
    return end


def _is_id3_audio(head: bytes) -> bool:
    """An ID3v2 tag followed by audio (or more tags) as far as the window shows."""
    offset = 0
    while (end := _id3_end(head, offset)) is not None:
        offset = end
        while offset < len(head) and head[offset] == 0:
            offset += 1  # padding written after the tag
        if offset >= len(head):
            return True  # the tag fills the window: nothing more to see
        if head.startswith(b"ID3", offset):
            continue
        return head.startswith(b"fLaC", offset) or _starts_audio_frames(head, offset)
    return False


# --- the rest ---------------------------------------------------------------------------


def _is_flv(head: bytes) -> bool:
    # version 1, flags only audio (4) and video (1), a 9-byte header, then PreviousTagSize0 = 0
    return (
        len(head) >= 13
        and head.startswith(b"FLV\x01")
        and head[4] & 0xFA == 0
        and _u32be(head, 5) == 9
        and _u32be(head, 9) == 0
    )


def _is_ogg(head: bytes) -> bool:
    # version 0, a first page that begins a stream (BOS), continues none, no undefined flags
    return len(head) >= 27 and head.startswith(b"OggS\x00") and head[5] & 0xFB == 0x02


def _is_flac(head: bytes) -> bool:
    # the first metadata block is STREAMINFO (type 0), always 34 bytes long
    return head.startswith(b"fLaC") and head[4:8] in (b"\x00\x00\x00\x22", b"\x80\x00\x00\x22")


def _is_asf(head: bytes) -> bool:
    # the header object's GUID, its 64-bit size, a count of objects, then reserved 1 and 2
    return (
        len(head) >= 30
        and head.startswith(_ASF_HEADER_GUID)
        and struct.unpack_from("<Q", head, 16)[0] >= 30
        and head[28:30] == b"\x01\x02"
    )


def _is_mpeg_ps(head: bytes) -> bool:
    if head.startswith(b"\x00\x00\x01\xba") and len(head) >= 5:
        return head[4] & 0xC0 == 0x40 or head[4] & 0xF0 == 0x20  # MPEG-2 or MPEG-1 pack
    return head.startswith(b"\x00\x00\x01\xb3")  # an MPEG video sequence header


def _is_mpeg_ts(head: bytes) -> bool:
    # 188-byte packets, each starting with the 0x47 sync byte, none flagged as corrupt;
    # M2TS (camcorders' .mts) puts a 4-byte timestamp before each, making them 192 bytes.
    return any(
        len(head) > first + 2 * stride + 1
        and all(
            head[at] == 0x47 and not head[at + 1] & 0x80
            for at in range(first, first + 3 * stride, stride)
        )
        for first, stride in ((0, 188), (4, 192))
    )


def _is_other_audio(head: bytes) -> bool:
    for magic in (b"#!AMR\n", b"#!AMR-WB\n"):
        if head.startswith(magic):
            # a frame header follows: padding bit, frame type, quality bit, two zero bits
            return len(head) > len(magic) and head[len(magic)] & 0x83 == 0
    return head.startswith(b"caff\x00\x01\x00\x00desc") or _is_aiff(head)


_FAMILIES: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("mp4", _is_iso_media),
    ("matroska", _is_matroska),  # MKV and WebM
    ("avi", lambda head: _riff_family(head) == "avi"),
    ("wav", lambda head: _riff_family(head) == "wav"),
    ("flv", _is_flv),
    ("ogg", _is_ogg),
    ("flac", _is_flac),
    ("asf", _is_asf),  # WMV, WMA
    ("mpeg-ps", _is_mpeg_ps),
    ("mpeg-ts", _is_mpeg_ts),
    ("mp3", _is_id3_audio),
    ("mpeg-audio", _starts_audio_frames),  # MP3 or ADTS AAC frames with no tag
    ("audio", _is_other_audio),  # AMR, CAF, AIFF
)
