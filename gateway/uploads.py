"""Stream a multipart upload straight into storage, checking it on the way.

The request body is read in small pieces and parsed with werkzeug's sans-I/O
multipart decoder, so the gateway never holds the video in memory or spools it
to disk: the first bytes are sniffed (415 for non-media) before anything is
stored, then every piece goes on to the store as it arrives, counted against
the size limit (413). Whatever goes wrong, a half-written file is removed.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Generic, Protocol, TypeVar

from bson import ObjectId
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
    Preamble,
    State,
)

from common.http.errors import ApiError
from common.sniff import SNIFF_BYTES, sniff_container

log = logging.getLogger(__name__)

FILE_FIELD = "file"
READ_SIZE = 256 * 1024
# A text field (an option, a callback URL) is short; the file is never held in memory.
MAX_FIELD_BYTES = 4096
# The text before the first part (the preamble) and one part's headers are held whole
# until their end is found: beyond this they are refused (413) instead of growing a worker.
MAX_FORM_HEADER_BYTES = 64 * 1024
# The most the multipart decoder may buffer: one read plus an unfinished preamble or header.
MAX_FORM_MEMORY_SIZE = READ_SIZE + MAX_FORM_HEADER_BYTES
MAX_PARTS = 32
MAX_FILENAME_LENGTH = 200
_UNSAFE_FILENAME_CHARS = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|]+')


class UploadSink(Protocol):
    """Where the file's bytes go (a GridFS upload in production)."""

    def write(self, data: bytes) -> None:
        """Append bytes."""

    def finish(self) -> ObjectId:
        """Complete the file and return its id."""

    def abort(self) -> None:
        """Discard what was written."""


T = TypeVar("T")


@dataclass
class ReceivedUpload(Generic[T]):
    """What arrived: the stored file, and what ``read_fields`` made of the text fields."""

    video_fid: ObjectId
    filename: str
    size: int
    container: str
    fields: T


def clean_filename(raw: str | None) -> str:
    """Reduce a client's filename to a safe display name: no path, controls or quotes."""
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[\\/]", name)[-1]  # browsers on Windows send full paths
    name = _UNSAFE_FILENAME_CHARS.sub("_", name).strip(" ._")
    if len(name) > MAX_FILENAME_LENGTH:
        _, dot, ext = name.rpartition(".")
        keep = ext if dot and len(ext) <= 10 else ""
        name = name[: MAX_FILENAME_LENGTH - len(keep) - 1].rstrip(" ._") + (
            "." + keep if keep else ""
        )
    return name or "video"


def _bad(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def receive_upload(
    stream: BinaryIO,
    boundary: bytes,
    *,
    open_sink: Callable[[str], UploadSink],
    max_bytes: int,
    read_fields: Callable[[dict[str, str]], T],
) -> ReceivedUpload[T]:
    """Read a multipart body with exactly one file field named ``file`` into a new sink.

    ``read_fields`` reads the text fields sent before the file as the file starts (so
    a bad option fails before a large file is read), and again once the body is read
    if more came after the file, before the file is kept: whatever it raises discards
    the file. What it returns is the upload's ``fields``.

    Raises:
        ApiError: 400 for a malformed form, no file, several files, an empty
            file or a bad text field; 413 when the file exceeds ``max_bytes``, or
            the preamble, a part's headers, a text field or the number of parts
            exceeds its limit; 415 when the file does not start like any
            audio/video container; whatever ``stream.read`` raises (408 from
            ``gateway.watchdog`` for a body that arrives too slowly).
        TransientError: the store failed.
    """
    receiver = _Receiver(open_sink, max_bytes, read_fields)
    # The decoder hands file data on as it arrives, so its buffer only grows while it
    # looks for the end of a preamble or of a part's headers: that is what the limit bounds.
    decoder = MultipartDecoder(
        boundary, max_form_memory_size=MAX_FORM_MEMORY_SIZE, max_parts=MAX_PARTS
    )
    try:
        while True:
            chunk = stream.read(READ_SIZE)
            try:
                decoder.receive_data(chunk or None)
            except RequestEntityTooLarge:
                raise _form_too_large() from None
            try:
                event = decoder.next_event()
                while not isinstance(event, NeedData | Epilogue):
                    receiver.on_event(event)
                    event = decoder.next_event()
            except RequestEntityTooLarge:
                raise ApiError(
                    413, "too_many_parts", f"Send at most {MAX_PARTS} form fields."
                ) from None
            except ValueError as exc:
                raise _bad("malformed_upload", f"The multipart body is malformed: {exc}") from None
            # After the closing boundary only an epilogue may follow, which carries
            # nothing: the form is complete without reading it.
            if isinstance(event, Epilogue) or not chunk or decoder.state is State.EPILOGUE:
                break
        return receiver.result()
    except BaseException:
        receiver.discard()
        raise


def _form_too_large() -> ApiError:
    return ApiError(
        413,
        "form_too_large",
        f"The text before the first part or a part's headers exceed {MAX_FORM_HEADER_BYTES} bytes.",
    )


def _header_bytes(event: Field | File) -> int:
    """Return about how many bytes the part's headers took, as sent."""
    return sum(len(name) + len(value) + 4 for name, value in event.headers.items())


class _Receiver(Generic[T]):
    """Follow the decoder's events for one upload."""

    def __init__(
        self,
        open_sink: Callable[[str], UploadSink],
        max_bytes: int,
        read_fields: Callable[[dict[str, str]], T],
    ) -> None:
        self._open_sink = open_sink
        self._max_bytes = max_bytes
        self._read_fields = read_fields
        self._part: Field | File | None = None
        self._field_bytes = bytearray()
        self._fields: dict[str, str] = {}
        self._read: tuple[dict[str, str], T] | None = None  # (the fields read, the reading)
        self._filename: str | None = None
        self._head = bytearray()
        self._container: str | None = None
        self._sink: UploadSink | None = None
        self._size = 0

    def on_event(self, event: Preamble | Field | File | Data) -> None:
        if isinstance(event, Preamble):
            # Text before the first boundary carries nothing, but must not be large.
            if len(event.data) > MAX_FORM_HEADER_BYTES:
                raise _form_too_large()
            return
        if isinstance(event, Field | File) and _header_bytes(event) > MAX_FORM_HEADER_BYTES:
            raise _form_too_large()
        if isinstance(event, File):
            self._start_file(event)
        elif isinstance(event, Field):
            self._start_field(event)
        elif isinstance(self._part, File):
            self._file_data(event.data, more=event.more_data)
        else:
            self._field_data(event.data, more=event.more_data)

    def _start_file(self, event: File) -> None:
        if event.name != FILE_FIELD:
            raise _bad(
                "invalid_upload",
                f"Unexpected file field {event.name!r}; send one field named 'file'.",
            )
        if self._filename is not None:
            raise _bad("invalid_upload", "Send exactly one file per upload.")
        self._part = event
        self._filename = clean_filename(event.filename)
        if self._fields:
            # Fields sent before the file are read now, before the file is.
            self._read_now()

    def _start_field(self, event: Field) -> None:
        if event.name == FILE_FIELD:
            raise _bad("invalid_upload", "The 'file' field must be a file, not text.")
        self._part = event
        self._field_bytes.clear()

    def _field_data(self, data: bytes, *, more: bool) -> None:
        self._field_bytes += data
        if len(self._field_bytes) > MAX_FIELD_BYTES:
            raise ApiError(
                413,
                "field_too_large",
                f"The field {self._part.name!r} exceeds {MAX_FIELD_BYTES} bytes.",
            )
        if not more:
            try:
                self._fields[self._part.name] = self._field_bytes.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad(
                    "invalid_field", f"The field {self._part.name!r} is not UTF-8 text."
                ) from None

    def _file_data(self, data: bytes, *, more: bool) -> None:
        self._size += len(data)
        if self._size > self._max_bytes:
            raise ApiError(413, "too_large", f"The file exceeds the {self._max_bytes}-byte limit.")
        if self._sink is None:
            self._head += data
            if len(self._head) < SNIFF_BYTES and more:
                return
            self._open(bytes(self._head))
        elif data:
            self._sink.write(data)

    def _open(self, head: bytes) -> None:
        if not head:
            raise _bad("empty_file", "The uploaded file is empty.")
        self._container = sniff_container(head)
        if self._container is None:
            raise ApiError(
                415, "unsupported_media_type", "The file does not look like an audio or video file."
            )
        self._sink = self._open_sink(self._filename or "video")
        self._sink.write(head)

    def _read_now(self) -> T:
        if self._read is None or self._read[0] != self._fields:
            fields = dict(self._fields)
            self._read = (fields, self._read_fields(dict(fields)))
        return self._read[1]

    def result(self) -> ReceivedUpload[T]:
        if self._filename is None:
            raise _bad("missing_file", "Send the video as a multipart field named 'file'.")
        if self._sink is None:
            raise _bad("empty_file", "The uploaded file is empty.")
        fields = self._read_now()  # again only if more fields came after the file
        video_fid = self._sink.finish()
        return ReceivedUpload(
            video_fid=video_fid,
            filename=self._filename,
            size=self._size,
            container=self._container or "unknown",
            fields=fields,
        )

    def discard(self) -> None:
        if self._sink is not None:
            self._sink.abort()
