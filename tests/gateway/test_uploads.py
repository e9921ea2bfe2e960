"""The streaming multipart receiver, driven directly with in-memory bodies."""

from __future__ import annotations

import io

import pytest
from bson import ObjectId

from common.http.errors import ApiError
from common.sniff import SNIFF_BYTES
from gateway.uploads import (
    MAX_FORM_HEADER_BYTES,
    MAX_PARTS,
    READ_SIZE,
    clean_filename,
    receive_upload,
)

BOUNDARY = b"----video2mp3test"
MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"


class MemorySink:
    """Collect what the receiver stores, like a GridFS upload would."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.data = bytearray()
        self.writes = 0
        self.finished = self.aborted = False
        self.file_id = ObjectId()

    def write(self, data: bytes) -> None:
        self.data += data
        self.writes += 1

    def finish(self) -> ObjectId:
        self.finished = True
        return self.file_id

    def abort(self) -> None:
        self.aborted = True


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """Encode (field name, filename or None for text, content) parts."""
    body = bytearray()
    for name, filename, content in parts:
        body += b"--" + BOUNDARY + b"\r\n"
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"Content-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            body += b"Content-Type: application/octet-stream\r\n"
        body += b"\r\n" + content + b"\r\n"
    body += b"--" + BOUNDARY + b"--\r\n"
    return bytes(body)


def receive(body: bytes, max_bytes: int = 10 * 1024 * 1024):
    sinks: list[MemorySink] = []

    def open_sink(filename: str) -> MemorySink:
        sinks.append(MemorySink(filename))
        return sinks[-1]

    try:
        return receive_upload(
            io.BytesIO(body), BOUNDARY, open_sink=open_sink, max_bytes=max_bytes, read_fields=dict
        ), sinks
    except ApiError as exc:
        exc.sinks = sinks
        raise


def test_the_file_streams_into_the_sink_with_its_fields():
    video = MP4_HEAD + bytes(range(256)) * 4000  # ~1 MB, several reads
    received, [sink] = receive(multipart(("bitrate", None, b"128"), ("file", "clip.mp4", video)))
    assert bytes(sink.data) == video
    assert sink.finished
    assert not sink.aborted
    assert sink.writes > 2  # written as it arrived, not in one piece
    assert sink.filename == "clip.mp4"
    assert received.video_fid == sink.file_id
    assert received.size == len(video)
    assert received.container == "mp4"
    assert received.fields == {"bitrate": "128"}


def test_a_file_smaller_than_the_sniff_window_is_still_checked_and_stored():
    tiny = b"ID3\x04\x00" + b"\x00" * 20
    assert len(tiny) < SNIFF_BYTES
    received, [sink] = receive(multipart(("file", "a.mp3", tiny)))
    assert bytes(sink.data) == tiny
    assert received.container == "mp3"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (multipart(("bitrate", None, b"128")), 400, "missing_file"),
        (multipart(("file", "empty.mp4", b"")), 400, "empty_file"),
        (
            multipart(("file", "a.mp4", MP4_HEAD), ("file", "b.mp4", MP4_HEAD)),
            400,
            "invalid_upload",
        ),
        (multipart(("video", "a.mp4", MP4_HEAD)), 400, "invalid_upload"),
        (multipart(("file", None, b"just text")), 400, "invalid_upload"),
        (
            multipart(("file", "notes.mp4", b"These are my notes, not a video." * 20)),
            415,
            "unsupported_media_type",
        ),
        (
            multipart(("title", None, b"x" * 5000), ("file", "a.mp4", MP4_HEAD)),
            413,
            "field_too_large",
        ),
        (b"preamble\r\n" * 10_000 + multipart(("file", "a.mp4", MP4_HEAD)), 413, "form_too_large"),
        (
            b"preamble\r\n" * 100_000 + multipart(("file", "a.mp4", MP4_HEAD)),
            413,
            "form_too_large",
        ),
        (
            multipart(("file", "x" * (MAX_FORM_HEADER_BYTES + 1) + ".mp4", MP4_HEAD)),
            413,
            "form_too_large",
        ),
        (
            multipart(*((f"f{n}", None, b"1") for n in range(MAX_PARTS + 1))),
            413,
            "too_many_parts",
        ),
        (
            multipart(("title", None, b"\xff\xfe"), ("file", "a.mp4", MP4_HEAD)),
            400,
            "invalid_field",
        ),
        (
            b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; '
            b'filename="a.mp4"\r\n\r\n' + MP4_HEAD * 40,
            400,
            "malformed_upload",
        ),
        (b"not multipart at all", 400, "malformed_upload"),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(body, status, code):
    with pytest.raises(ApiError) as caught:
        receive(body)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert all(sink.aborted or not sink.data for sink in caught.value.sinks)
    assert not any(sink.finished for sink in caught.value.sinks)


def test_a_file_over_the_limit_is_refused_while_streaming():
    video = MP4_HEAD + b"\x00" * (3 * READ_SIZE)
    with pytest.raises(ApiError) as caught:
        receive(multipart(("file", "big.mp4", video)), max_bytes=2 * READ_SIZE)
    assert caught.value.status == 413
    [sink] = caught.value.sinks
    assert sink.aborted
    assert len(sink.data) <= 3 * READ_SIZE  # stopped before reading the rest


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("clip.mp4", "clip.mp4"),
        ("C:\\Users\\me\\Videos\\holiday.mov", "holiday.mov"),
        ("../../etc/passwd", "passwd"),
        ('evil"\r\nX-Injected: 1.mp4', "evil_X-Injected_ 1.mp4"),
        ("nul\x00byte.mp4", "nul_byte.mp4"),
        ("", "video"),
        (None, "video"),
        ("...", "video"),
        ("Fête à la plage.mp4", "Fête à la plage.mp4"),
    ],
)
def test_filenames_are_cleaned(raw, expected):
    assert clean_filename(raw) == expected


def test_huge_filenames_are_shortened_keeping_the_extension():
    cleaned = clean_filename("a" * 5000 + ".webm")
    assert len(cleaned) <= 200
    assert cleaned.endswith(".webm")


def test_fields_sent_before_the_file_are_checked_before_it_is_read():
    seen = []

    def check(fields):
        seen.append(dict(fields))
        if fields.get("bitrate") == "7":
            raise ApiError(400, "invalid_option", "bad bitrate")

    body = multipart(("bitrate", None, b"7"), ("file", "a.mp4", MP4_HEAD * 1000))
    with pytest.raises(ApiError):
        receive_upload(
            io.BytesIO(body), BOUNDARY, open_sink=MemorySink, max_bytes=10**7, read_fields=check
        )
    assert seen == [{"bitrate": "7"}]  # refused as the file started, not after reading it


def test_the_epilogue_after_the_closing_boundary_is_not_read():
    stream = io.BytesIO(multipart(("file", "a.mp4", MP4_HEAD)) + b"epilogue " * READ_SIZE)
    received = receive_upload(
        stream, BOUNDARY, open_sink=MemorySink, max_bytes=10**7, read_fields=dict
    )
    assert received.container == "mp4"
    assert stream.tell() <= READ_SIZE  # one read, not the 2 MiB behind it
