"""Request bodies that stream a file instead of holding it in memory.

``FileBody`` is a run of a file's bytes (a tus chunk); ``MultipartUpload`` wraps
one in a multipart/form-data body for ``POST /upload``.
``requests`` builds multipart bodies in memory; this one is a file-like object
that hands the HTTP library the text fields, then the file a chunk at a time
as the socket takes it, then the closing boundary. Its length is known up
front, so the request carries a Content-Length (which lets the server refuse an
oversized upload before reading it) rather than chunked encoding.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO

CHUNK_SIZE = 256 * 1024
CRLF = b"\r\n"


class FileChanged(Exception):
    """The file ended before the size announced for it: it changed while being sent."""


class FileBody:
    """The next ``size`` bytes of an open file, handed out a bounded piece at a time.

    It is a request body on its own (a tus chunk) or the file part of a multipart
    body. ``read(n)`` never asks the file for more than ``chunk_size`` bytes;
    ``on_progress`` is called with ``start`` plus the bytes read so far, so a
    chunk of a larger upload reports where the whole upload stands.
    """

    def __init__(
        self,
        file: BinaryIO,
        size: int,
        *,
        chunk_size: int = CHUNK_SIZE,
        start: int = 0,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self._file = file
        self._size = size
        self._chunk_size = chunk_size
        self._start = start
        self._on_progress = on_progress
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def read(self, size: int | None = -1) -> bytes:
        """Return at most ``size`` (and ``chunk_size``) more bytes of the file, b"" at the end.

        Raises:
            FileChanged: the file is shorter than the size it was announced with.
        """
        want = min(self._chunk_size, self._size - self.sent)
        if size is not None and size >= 0:
            want = min(want, size)
        if want <= 0:
            return b""
        piece = self._file.read(want)
        if not piece:
            raise FileChanged(
                f"the file ended after {self._start + self.sent} of "
                f"{self._start + self._size} bytes; did it change while it was being uploaded?"
            )
        self.sent += len(piece)
        if self._on_progress is not None:
            self._on_progress(self._start + self.sent)
        return piece


def quote_filename(filename: str) -> str:
    """Escape a filename for a Content-Disposition parameter the way browsers do (WHATWG)."""
    return filename.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


class MultipartUpload:
    """One file field and some text fields, encoded as they are read.

    ``read(n)`` never asks the file for more than ``chunk_size`` bytes, whatever
    ``n`` is; ``on_progress`` is called with the number of file bytes read so far.
    """

    def __init__(
        self,
        file: BinaryIO,
        *,
        filename: str,
        size: int,
        fields: Mapping[str, str] | None = None,
        field_name: str = "file",
        content_type: str = "application/octet-stream",
        chunk_size: int = CHUNK_SIZE,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.boundary = f"video2mp3-{secrets.token_hex(16)}"
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self._file = FileBody(file, size, chunk_size=chunk_size, on_progress=on_progress)
        self._size = size
        self._chunk_size = chunk_size
        delimiter = f"--{self.boundary}".encode("ascii")
        head = bytearray()
        for name, value in (fields or {}).items():
            head += delimiter + CRLF
            head += f'Content-Disposition: form-data; name="{quote_filename(name)}"'.encode()
            head += CRLF + CRLF + value.encode("utf-8") + CRLF
        head += delimiter + CRLF
        head += (
            f'Content-Disposition: form-data; name="{quote_filename(field_name)}"; '
            f'filename="{quote_filename(filename)}"'
        ).encode()
        head += CRLF + f"Content-Type: {content_type}".encode("ascii") + CRLF + CRLF
        self._head = bytes(head)
        self._tail = CRLF + delimiter + b"--" + CRLF
        self._position = 0  # in the whole body

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    @property
    def file_bytes_sent(self) -> int:
        """Return how many bytes of the file have been read into the body so far."""
        return self._file.sent

    def read(self, size: int | None = -1) -> bytes:
        """Return the next part of the body: at most ``size`` bytes, b"" at the end.

        Raises:
            FileChanged: the file is shorter than the size it was announced with.
        """
        if size is None or size < 0:
            size = self._chunk_size
        head_end = len(self._head)
        file_end = head_end + self._size
        if self._position < head_end:
            piece = self._head[self._position : self._position + size]
        elif self._position < file_end:
            piece = self._file.read(size)
        else:
            offset = self._position - file_end
            piece = self._tail[offset : offset + size]
        self._position += len(piece)
        return piece

    def __iter__(self) -> Iterator[bytes]:
        while piece := self.read(self._chunk_size):
            yield piece
