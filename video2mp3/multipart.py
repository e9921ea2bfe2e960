"""A multipart/form-data body that streams its file instead of holding it in memory.

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
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.boundary = f"video2mp3-{secrets.token_hex(16)}"
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self._file = file
        self._size = size
        self._chunk_size = chunk_size
        self._on_progress = on_progress
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
        self._file_sent = 0

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    @property
    def file_bytes_sent(self) -> int:
        """Return how many bytes of the file have been read into the body so far."""
        return self._file_sent

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
            want = min(size, self._chunk_size, file_end - self._position)
            piece = self._file.read(want)
            if not piece:
                raise FileChanged(
                    f"the file ended after {self._file_sent} of {self._size} bytes; "
                    "did it change while it was being uploaded?"
                )
            self._file_sent += len(piece)
            if self._on_progress is not None:
                self._on_progress(self._file_sent)
        else:
            offset = self._position - file_end
            piece = self._tail[offset : offset + size]
        self._position += len(piece)
        return piece

    def __iter__(self) -> Iterator[bytes]:
        while piece := self.read(self._chunk_size):
            yield piece
