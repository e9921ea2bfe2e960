"""MongoDB: the GridFS buckets for videos and MP3s, and the client they share.

This module and ``common.jobs`` are the only places that talk to MongoDB.
Files stream in and out in chunks, never whole in memory. Connection failures
surface as ``TransientError`` and unknown ids as ``FileNotFound``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import gridfs
import gridfs.errors
import pymongo
import pymongo.errors
from bson import ObjectId
from bson.errors import InvalidId

from common.config import MongoConfig
from common.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024  # GridFS chunk and streaming read size


class FileNotFound(PermanentError):
    """No stored file has that id."""


def parse_object_id(value: object) -> ObjectId:
    """Turn a client-supplied id into an ObjectId.

    Raises:
        FileNotFound: the value is not a well-formed id, so no file can have it.
    """
    if isinstance(value, ObjectId):
        return value
    try:
        return ObjectId(str(value))
    except (InvalidId, TypeError):
        raise FileNotFound(f"no file with id {value!r}") from None


@contextlib.contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Turn pymongo's failures into the project's error classes."""
    try:
        yield
    except gridfs.errors.NoFile as exc:
        raise FileNotFound(str(exc)) from None
    except pymongo.errors.ConnectionFailure as exc:
        # AutoReconnect, NetworkTimeout and server selection timeouts all land
        # here: the store is down or unreachable for now.
        raise TransientError(f"MongoDB unavailable while {action}: {exc}") from exc


def connect(config: MongoConfig) -> pymongo.MongoClient:
    """Create a client; it connects lazily, so this never blocks or fails on a down server."""
    return pymongo.MongoClient(
        config.uri,
        connect=False,  # safe to create before gunicorn forks its workers
        serverSelectionTimeoutMS=config.timeout_ms,
        connectTimeoutMS=config.timeout_ms,
        socketTimeoutMS=max(config.timeout_ms * 6, 30_000),
        retryWrites=True,
        appname="video2mp3",
        tz_aware=True,
    )


class Upload:
    """A file being written into GridFS; ``finish()`` it, or ``abort()`` to leave nothing."""

    def __init__(self, grid_in: gridfs.GridIn) -> None:
        self._grid_in = grid_in
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append bytes to the file.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("storing a file"):
            self._grid_in.write(data)
        self.size += len(data)

    def finish(self) -> ObjectId:
        """Flush the last chunk, write the file's record and return its id.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("storing a file"):
            self._grid_in.close()
        return self._grid_in._id

    def abort(self) -> None:
        """Delete whatever was written; never raises, the store may be the thing that failed."""
        try:
            self._grid_in.abort()
        except pymongo.errors.PyMongoError as exc:
            log.warning("could not remove the chunks of an aborted upload: %s", exc)


class Bucket:
    """One GridFS bucket (``videos`` or ``mp3s``) with streaming put/get."""

    def __init__(self, client: pymongo.MongoClient, database: str) -> None:
        self._bucket = gridfs.GridFSBucket(client[database], chunk_size_bytes=CHUNK_SIZE)
        self._files = client[database]["fs.files"]

    def open_upload(self, filename: str, metadata: Mapping[str, Any]) -> Upload:
        """Start a new file that is written piece by piece."""
        with translate_errors("opening an upload"):
            return Upload(self._bucket.open_upload_stream(filename, metadata=dict(metadata)))

    def put(self, stream: BinaryIO, filename: str, metadata: Mapping[str, Any]) -> ObjectId:
        """Stream ``stream`` into a new file and return its id.

        Raises:
            TransientError: MongoDB failed; nothing is left behind.
        """
        upload = self.open_upload(filename, metadata)
        try:
            while chunk := stream.read(CHUNK_SIZE):
                upload.write(chunk)
            return upload.finish()
        except BaseException:
            upload.abort()
            raise

    def open(self, file_id: object) -> gridfs.GridOut:
        """Open a stored file for streaming reads (``read``, ``seek``, ``length``).

        Raises:
            FileNotFound: no file has that id (or the id is malformed).
            TransientError: MongoDB failed.
        """
        oid = parse_object_id(file_id)
        with translate_errors("opening a file"):
            return self._bucket.open_download_stream(oid)

    def iter_chunks(
        self, file_id: object, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """Yield the bytes of ``[start, end)`` of a file in chunks."""
        grid_out = self.open(file_id)
        remaining = (grid_out.length if end is None else end) - start
        with translate_errors("reading a file"):
            grid_out.seek(start)
            while remaining > 0:
                chunk = grid_out.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk

    def download_to(self, file_id: object, destination: BinaryIO) -> int:
        """Copy a stored file into ``destination`` and return the byte count."""
        written = 0
        for chunk in self.iter_chunks(file_id):
            destination.write(chunk)
            written += len(chunk)
        return written

    def find_one(self, query: Mapping[str, Any]) -> dict[str, Any] | None:
        """Return the files document matching ``query`` (e.g. on metadata), or None."""
        with translate_errors("looking up a file"):
            return self._files.find_one(dict(query))

    def delete(self, file_id: object) -> bool:
        """Delete a file; return False if it did not exist."""
        try:
            oid = parse_object_id(file_id)
            with translate_errors("deleting a file"):
                self._bucket.delete(oid)
        except FileNotFound:
            return False
        return True


class Storage:
    """The two buckets the pipeline uses, over one shared client."""

    def __init__(self, config: MongoConfig, client: pymongo.MongoClient | None = None) -> None:
        self.config = config
        self.client = client or connect(config)
        self.videos = Bucket(self.client, config.videos_db)
        self.mp3s = Bucket(self.client, config.mp3s_db)

    def ping(self) -> None:
        """Check that MongoDB answers.

        Raises:
            TransientError: it does not.
        """
        with translate_errors("pinging"):
            self.client.admin.command("ping")

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()
