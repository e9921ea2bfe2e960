"""MongoDB GridFS: the buckets for videos and MP3s, over one shared client.

Files stream in and out in chunks, never whole in memory. Connection failures
surface as ``TransientError`` and unknown ids as ``FileNotFound`` (``common.mongo``).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, BinaryIO

import gridfs
import gridfs.errors
import pymongo
import pymongo.collection
import pymongo.errors
from bson import ObjectId

from common.config import MongoConfig
from common.errors import TransientError
from common.mongo import FileNotFound, connect, parse_object_id, translate_errors, utcnow
from common.retry import retry_transient

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024  # GridFS chunk and streaming read size
# Chunks an upload sends per insert: fewer round trips, yet only a few MiB held per upload.
UPLOAD_BATCH_CHUNKS = 4
# Chunks a download fetches per query: few round trips, a few MiB held per download.
READ_BATCH_CHUNKS = 4
# The gateway's record of each unfinished resumable upload (gateway.resumable), in the
# videos database: its bytes are in the videos bucket under the record's ``_id``.
RESUMABLE_UPLOADS = "tus_uploads"


class Upload:
    """A file being written into GridFS; ``finish()`` it, or ``abort()`` to leave nothing.

    It writes the GridFS layout itself (``fs.chunks`` documents of ``CHUNK_SIZE`` bytes,
    then the ``fs.files`` document) rather than through pymongo's ``GridIn``, because
    ``GridIn`` holds up to 48 MB of chunks per file to send them in one message: with a
    few uploads at once that is hundreds of MB in the gateway. Here at most
    ``UPLOAD_BATCH_CHUNKS`` chunks wait, plus one being filled.
    """

    def __init__(
        self,
        bucket: Bucket,
        filename: str,
        metadata: Mapping[str, Any],
        chunk_size: int,
        *,
        abort_patience: float = 0.0,
        file_id: ObjectId | None = None,
    ) -> None:
        self._bucket = bucket
        self._abort_patience = abort_patience
        self._file_id = file_id or ObjectId()
        self._filename = filename
        self._metadata = dict(metadata)
        self._chunk_size = chunk_size
        self._partial = bytearray()
        self._pending: list[dict[str, Any]] = []
        self._chunk_count = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append bytes to the file.

        Raises:
            TransientError: MongoDB failed.
        """
        self.size += len(data)
        if not self._partial and len(data) == self._chunk_size:
            self._add_chunk(data)  # a reader that reads whole chunks costs no copy
            return
        self._partial += data
        while len(self._partial) >= self._chunk_size:
            self._add_chunk(bytes(memoryview(self._partial)[: self._chunk_size]))
            del self._partial[: self._chunk_size]

    def _add_chunk(self, data: bytes) -> None:
        self._pending.append({"files_id": self._file_id, "n": self._chunk_count, "data": data})
        self._chunk_count += 1
        if len(self._pending) >= UPLOAD_BATCH_CHUNKS:
            self._send_pending()

    def _send_pending(self) -> None:
        if not self._pending:
            return
        with translate_errors("storing a file"):
            self._bucket.chunks.insert_many(self._pending)
        self._pending = []

    def finish(self) -> ObjectId:
        """Store the last chunk and the file's record, and return its id.

        Raises:
            TransientError: MongoDB failed.
        """
        if self._partial:
            self._add_chunk(bytes(self._partial))
            self._partial.clear()
        self._send_pending()
        with translate_errors("storing a file"):
            self._bucket.files.insert_one(
                {
                    "_id": self._file_id,
                    "length": self.size,
                    "chunkSize": self._chunk_size,
                    "uploadDate": utcnow(),
                    "filename": self._filename,
                    "metadata": self._metadata,
                }
            )
        return self._file_id

    def abort(self) -> None:
        """Delete whatever was written; never raises, the store may be the thing that failed.

        A write that failed may still have landed, so this waits out a store outage of up
        to ``abort_patience`` seconds before it gives up and leaves the pieces behind.
        """
        self._pending = []
        self._partial.clear()

        def remove() -> None:
            with translate_errors("removing an aborted upload"):
                self._bucket.chunks.delete_many({"files_id": self._file_id})
                self._bucket.files.delete_one({"_id": self._file_id})

        try:
            retry_transient(
                remove, "MongoDB to remove an aborted upload", timeout=self._abort_patience
            )
        except (TransientError, pymongo.errors.PyMongoError) as exc:
            log.warning("could not remove the aborted upload %s: %s", self._file_id, exc)


class ChunkReader:
    """A stored file as an iterable of its GridFS chunks, each passed on as it arrives.

    It asks for ``READ_BATCH_CHUNKS`` chunks at a time by their numbers, so a download
    holds at most 4 MiB of the file: pymongo's own chunk reader (``GridOut.readchunk``)
    runs one cursor without a batch size, whose every batch brings up to 16 MiB, per
    download and gateway thread. The bound costs little: on mongod this reads a file in
    1.1x the wall time and 1.2x the server CPU of ``readchunk`` (``bench/mongo.py``).
    It hands on each chunk's own bytes (iterating a ``GridOut`` yields lines), and it can
    ``seek``, so werkzeug serves a Range from its offset, not by reading up to it.
    """

    def __init__(self, chunks: pymongo.collection.Collection, grid_out: gridfs.GridOut) -> None:
        self._chunks = chunks
        self._grid_out = grid_out
        self._file_id = grid_out._id
        self._chunk_size = int(grid_out.chunk_size)
        self._length = int(grid_out.length)
        self._chunk_count = -(-self._length // self._chunk_size)
        self._position = 0
        self._batch: collections.deque[dict[str, Any]] = collections.deque()

    def __iter__(self) -> ChunkReader:
        return self

    def __next__(self) -> bytes:
        if self._position >= self._length:
            raise StopIteration
        number, offset = divmod(self._position, self._chunk_size)
        if not self._batch or self._batch[0]["n"] != number:
            self._batch = self._fetch(number)
        data = self._batch.popleft()["data"]
        if offset:
            data = data[offset:]
        if not data:
            raise gridfs.errors.CorruptGridFile(f"chunk {number} of {self._file_id} is short")
        self._position += len(data)
        return bytes(data)

    def _fetch(self, first: int) -> collections.deque[dict[str, Any]]:
        last = min(first + READ_BATCH_CHUNKS, self._chunk_count)
        with translate_errors("reading a file"):
            chunks = list(
                self._chunks.find({"files_id": self._file_id, "n": {"$gte": first, "$lt": last}})
            )
        chunks.sort(key=lambda chunk: chunk["n"])
        if [chunk["n"] for chunk in chunks] != list(range(first, last)):
            raise gridfs.errors.CorruptGridFile(
                f"chunks {first}-{last - 1} of {self._file_id} are incomplete"
            )
        return collections.deque(chunks)

    def seekable(self) -> bool:
        return True

    def seek(self, position: int, whence: int = 0) -> int:
        """Move to a byte offset of the file (whence as for files)."""
        base = {0: 0, 1: self._position, 2: self._length}[whence]
        self._position = max(0, base + position)
        return self._position

    def tell(self) -> int:
        """Return the current byte offset."""
        return self._position

    def close(self) -> None:
        """Drop the chunks fetched but not yet handed on."""
        self._batch.clear()


class Bucket:
    """One GridFS bucket (``videos`` or ``mp3s``) with streaming put/get."""

    def __init__(self, client: pymongo.MongoClient, database: str) -> None:
        self._bucket = gridfs.GridFSBucket(client[database], chunk_size_bytes=CHUNK_SIZE)
        self.files = client[database]["fs.files"]
        self.chunks = client[database]["fs.chunks"]
        self._indexed = False
        self._dated = False  # the index ``stored_before`` reads by

    def ensure_indexes(self) -> None:
        """Create the indexes GridFS readers rely on (as pymongo's GridIn would make them).

        Raises:
            TransientError: MongoDB failed.
        """
        if self._indexed:
            return
        with translate_errors("opening an upload"):
            self.files.create_index([("filename", 1), ("uploadDate", 1)])
            self.chunks.create_index([("files_id", 1), ("n", 1)], unique=True)
            # What a user stores (quotas), summed from the index alone.
            self.files.create_index([("metadata.owner", 1), ("length", 1)])
            # A redelivered conversion looks for the MP3 it stored before by its job.
            self.files.create_index("metadata.job_id", sparse=True)
        self._indexed = True

    def open_upload(
        self,
        filename: str,
        metadata: Mapping[str, Any],
        *,
        abort_patience: float = 0.0,
        file_id: ObjectId | None = None,
    ) -> Upload:
        """Start a new file that is written piece by piece (see ``Upload.abort``); ``file_id``
        is the id it gets, when a record already names it (a video imported by URL)."""
        self.ensure_indexes()
        return Upload(
            self, filename, metadata, CHUNK_SIZE, abort_patience=abort_patience, file_id=file_id
        )

    def put_chunk(self, file_id: ObjectId, number: int, data: bytes) -> None:
        """Store chunk ``number`` of a file being assembled across requests; storing it
        again replaces it, so a write repeated after an outage does no harm.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("storing a chunk"):
            self.chunks.replace_one(
                {"files_id": file_id, "n": number},
                {"files_id": file_id, "n": number, "data": data},
                upsert=True,
            )

    def seal(
        self, file_id: ObjectId, *, length: int, filename: str, metadata: Mapping[str, Any]
    ) -> None:
        """Record a file whose chunks ``put_chunk`` stored, making it a GridFS file.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("storing a file"):
            self.files.replace_one(
                {"_id": file_id},
                {
                    "_id": file_id,
                    "length": length,
                    "chunkSize": CHUNK_SIZE,
                    "uploadDate": utcnow(),
                    "filename": filename,
                    "metadata": dict(metadata),
                },
                upsert=True,
            )

    def delete_pieces(self, file_id: ObjectId) -> None:
        """Delete a file's chunks and its record, whether or not it was ever sealed.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("deleting a file"):
            self.chunks.delete_many({"files_id": file_id})
            self.files.delete_one({"_id": file_id})

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
        reader = self.reader(grid_out)
        reader.seek(start)
        try:
            for chunk in reader:
                if remaining <= 0:
                    break
                if len(chunk) > remaining:
                    chunk = chunk[:remaining]
                remaining -= len(chunk)
                yield chunk
        finally:
            reader.close()

    def reader(self, grid_out: gridfs.GridOut) -> ChunkReader:
        """Return an iterable of the chunks of a file opened with ``open``."""
        return ChunkReader(self.chunks, grid_out)

    def download_to(self, file_id: object, destination: BinaryIO) -> int:
        """Copy a stored file into ``destination`` and return the byte count."""
        written = 0
        for chunk in self.iter_chunks(file_id):
            destination.write(chunk)
            written += len(chunk)
        return written

    def bytes_of(self, owner: str) -> int:
        """Return how many bytes ``owner``'s files in this bucket take.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("measuring stored files"):
            totals = list(
                self.files.aggregate(
                    [
                        {"$match": {"metadata.owner": owner}},
                        {"$group": {"_id": None, "bytes": {"$sum": "$length"}}},
                    ]
                )
            )
        return int(totals[0]["bytes"]) if totals else 0

    def bytes_by_owner(self, owners: Iterable[str]) -> dict[str, int]:
        """Return how many bytes each of ``owners`` has in this bucket, in one aggregation.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("measuring stored files"):
            rows = self.files.aggregate(
                [
                    {"$match": {"metadata.owner": {"$in": list(owners)}}},
                    {"$group": {"_id": "$metadata.owner", "bytes": {"$sum": "$length"}}},
                ]
            )
            return {row["_id"]: int(row["bytes"]) for row in rows}

    def totals(self) -> tuple[int, int]:
        """Return how many files this bucket holds and their bytes.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("measuring stored files"):
            rows = list(
                self.files.aggregate(
                    [{"$group": {"_id": None, "files": {"$sum": 1}, "bytes": {"$sum": "$length"}}}]
                )
            )
        return (int(rows[0]["files"]), int(rows[0]["bytes"])) if rows else (0, 0)

    def find_one(self, query: Mapping[str, Any]) -> dict[str, Any] | None:
        """Return the files document matching ``query`` (e.g. on metadata), or None."""
        with translate_errors("looking up a file"):
            return self.files.find_one(dict(query))

    def metadata_of(self, file_id: object, field: str) -> Any:
        """Return one field of a stored file's metadata, or None if it has none.

        Raises:
            FileNotFound: no file has that id (or the id is malformed).
            TransientError: MongoDB failed.
        """
        oid = parse_object_id(file_id)
        with translate_errors("reading a file's metadata"):
            found = self.files.find_one({"_id": oid}, {f"metadata.{field}": 1})
        if found is None:
            raise FileNotFound(f"no file {oid}")
        return (found.get("metadata") or {}).get(field)

    def stored_before(
        self,
        moment: datetime,
        *,
        after: tuple[datetime, ObjectId] | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Return up to ``limit`` files stored before ``moment``, oldest first.

        Each is its ``_id``, ``uploadDate`` and ``metadata.job_id``. ``after`` is the
        (``uploadDate``, ``_id``) of the last file a previous call returned: the listing
        goes on from there, so a sweep is not held at files it keeps.

        Raises:
            TransientError: MongoDB failed.
        """
        query: dict[str, Any] = {"uploadDate": {"$lt": moment}}
        if after is not None:
            # (uploadDate, _id) > after; several files can share a millisecond.
            query["uploadDate"]["$gte"] = after[0]
            query["$or"] = [{"uploadDate": {"$gt": after[0]}}, {"_id": {"$gt": after[1]}}]
        with translate_errors("listing stored files"):
            if not self._dated:
                # Without it, each listing would scan and sort the whole bucket.
                self.files.create_index([("uploadDate", 1), ("_id", 1)])
                self._dated = True
            cursor = (
                self.files.find(query, {"uploadDate": 1, "metadata.job_id": 1})
                .sort([("uploadDate", 1), ("_id", 1)])
                .limit(limit)
            )
            return list(cursor)

    def begun_before(
        self, moment: datetime, *, after: ObjectId | None = None, limit: int = 100
    ) -> list[ObjectId]:
        """Return up to ``limit`` ids of files begun before ``moment``, finished or not.

        A file's id is an ``ObjectId`` made as its upload starts, so it holds that time;
        its first chunk (``n`` 0) is stored with the first bytes. So this finds, oldest
        first, the pieces of uploads that never finished too, which have no ``fs.files``
        record to date them, reading only the chunks' ``(files_id, n)`` index. ``after``
        is the last id a previous call returned.

        Raises:
            TransientError: MongoDB failed.
        """
        bounds: dict[str, Any] = {"$lt": ObjectId.from_datetime(moment)}
        if after is not None:
            bounds["$gt"] = after
        with translate_errors("listing stored files"):
            cursor = (
                self.chunks.find({"files_id": bounds, "n": 0}, {"files_id": 1, "_id": 0})
                .sort("files_id", 1)
                .limit(limit)
            )
            return [chunk["files_id"] for chunk in cursor]

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

    def delete_files_of(self, job: Mapping[str, Any]) -> None:
        """Delete a job's video and, if it has them, its MP3 and the tracks of a split.

        Callers delete the job record after this, never before: an outage in between
        leaves the record, so repeating the whole deletion finishes it.
        """
        self.videos.delete(job["video_fid"])
        if job.get("mp3_fid"):
            self.mp3s.delete(job["mp3_fid"])
        for track in job.get("tracks") or ():
            self.mp3s.delete(track["fid"])

    def resumable_among(self, video_fids: list[ObjectId]) -> set[ObjectId]:
        """Return which of these videos are unfinished resumable uploads, or were lately.

        Raises:
            TransientError: MongoDB failed.
        """
        records = self.client[self.config.videos_db][RESUMABLE_UPLOADS]
        with translate_errors("finding resumable uploads"):
            return {r["_id"] for r in records.find({"_id": {"$in": video_fids}}, {"_id": 1})}

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
