"""Resumable uploads kept across requests and gateway processes: the storage side of tus.

A resumable upload is a GridFS file assembled in place. Its bytes go into the
videos bucket's ``fs.chunks`` as they arrive, chunk by chunk, under the id the
finished file will have; what is known about it between requests (owner, length,
offset, the submission, its expiry, the sniffed container, and the bytes of a
last chunk not yet full) is one record in the videos database's ``tus_uploads``
collection. A request holds the record's lock (a token with a lease, taken
atomically) while it appends, so two requests never write one upload at once,
and any gateway process can take the next request. When the last byte arrives
the ``fs.files`` record is written and the upload is an ordinary GridFS file,
which ``Intake.accept`` turns into a job like any other.

An upload not finished by its expiry is removed with its bytes: ``sweep`` does
it, every ``SWEEP_INTERVAL_S`` in a thread of each gateway process
(``keep_sweeping``, started by the first request a process serves), and at once
for any expired upload a client asks about. The sweeps of several processes
claim each upload atomically, so they never remove one twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO

import pymongo
import pymongo.collection
from bson import ObjectId
from bson.errors import InvalidId

from common.errors import TransientError
from common.http.errors import ApiError
from common.jobs import JobStore
from common.mongo import translate_errors, utcnow
from common.sniff import SNIFF_BYTES, sniff_container
from common.storage import CHUNK_SIZE, RESUMABLE_UPLOADS, Storage
from gateway.intake import Submission

log = logging.getLogger(__name__)

COLLECTION = RESUMABLE_UPLOADS
READ_SIZE = 256 * 1024  # as gateway.uploads reads, so the read watchdog's deadline fits
SWEEP_INTERVAL_S = 60.0
SWEEP_BATCH = 50


# The checksum extension's algorithms: the names tus uses are hashlib's.
CHECKSUM_ALGORITHMS = ("md5", "sha1", "sha256")


@dataclass(frozen=True, slots=True)
class Checksum:
    """What a request's body must hash to (tus ``Upload-Checksum``)."""

    algorithm: str  # one of CHECKSUM_ALGORITHMS
    digest: bytes


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """A resumable upload as its record stands."""

    video_fid: ObjectId
    owner: str
    job_id: str
    length: int
    offset: int
    filename: str
    submission: Submission
    expires_at: datetime
    container: str | None
    sealed: bool  # every byte is stored and the GridFS file recorded
    accepted: bool  # its job exists

    @property
    def upload_id(self) -> str:
        """Return the id the client names the upload by (the video's file id)."""
        return str(self.video_fid)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PendingUpload:
        submission = record["submission"]
        return cls(
            video_fid=record["_id"],
            owner=record["owner"],
            job_id=record["job_id"],
            length=record["length"],
            offset=record["offset"],
            filename=record["filename"],
            submission=Submission(
                options=submission["options"],
                callback_url=submission.get("callback_url"),
                clip_start=submission.get("clip_start"),
            ),
            expires_at=record["expires_at"],
            container=record.get("container"),
            sealed=bool(record.get("sealed")),
            accepted=bool(record.get("accepted")),
        )


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "No such upload.")


def _busy() -> ApiError:
    return ApiError(
        423,
        "upload_busy",
        "Another request is writing to this upload; ask for its offset and try again.",
        headers={"Retry-After": "1"},
    )


def _not_media() -> ApiError:
    return ApiError(
        415, "unsupported_media_type", "The file does not look like an audio or video file."
    )


class ResumableUploads:
    """Create, append to, finish, terminate and expire resumable uploads."""

    def __init__(
        self,
        storage: Storage,
        jobs: JobStore,
        *,
        expiry: timedelta,
        lease: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._bucket = storage.videos
        self._client = storage.client
        self._database = storage.config.videos_db
        self._jobs = jobs
        self.expiry = expiry
        self._lease = lease
        self._clock = clock
        self._indexed = False
        self._sweep_lock = threading.Lock()
        self._sweeper_pid = 0  # the process whose sweeping thread runs
        self._closed = threading.Event()

    @property
    def _records(self) -> pymongo.collection.Collection:
        records = self._client[self._database][COLLECTION]
        if not self._indexed:
            with translate_errors("preparing resumable uploads"):
                records.create_index([("owner", 1), ("sealed", 1)])
                records.create_index("expires_at")
            self._bucket.ensure_indexes()
            self._indexed = True
        return records

    def create(
        self, *, owner: str, job_id: str, length: int, filename: str, submission: Submission
    ) -> PendingUpload:
        """Record a new upload of ``length`` bytes; no byte is stored yet.

        Raises:
            TransientError: MongoDB failed.
        """
        now = self._clock()
        record = {
            "_id": ObjectId(),
            "owner": owner,
            "job_id": job_id,
            "length": length,
            "offset": 0,
            "tail": b"",
            "filename": filename,
            "submission": {
                "options": submission.options,
                "callback_url": submission.callback_url,
                "clip_start": submission.clip_start,
            },
            "created_at": now,
            "expires_at": now + self.expiry,
            "container": None,
            "sealed": False,
            "accepted": False,
            "lock_holder": None,
            "lock_until": None,
        }
        with translate_errors("creating an upload"):
            self._records.insert_one(record)
        return PendingUpload.from_record(record)

    def pending_bytes(self, owner: str) -> int:
        """Return how many bytes ``owner``'s unfinished uploads announced.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("measuring unfinished uploads"):
            totals = list(
                self._records.aggregate(
                    [
                        {
                            "$match": {
                                "owner": owner,
                                "sealed": False,
                                "expires_at": {"$gt": self._clock()},
                            }
                        },
                        {"$group": {"_id": None, "bytes": {"$sum": "$length"}}},
                    ]
                )
            )
        return int(totals[0]["bytes"]) if totals else 0

    def find(self, upload_id: str, owner: str) -> PendingUpload | None:
        """Return ``owner``'s upload ``upload_id``, or None (unknown, someone else's, expired).

        Raises:
            TransientError: MongoDB failed.
        """
        record_id = _parse_id(upload_id)
        if record_id is None:
            return None
        with translate_errors("reading an upload"):
            record = self._records.find_one({"_id": record_id, "owner": owner}, {"tail": 0})
        if record is None:
            return None
        if record["expires_at"] <= self._clock():
            self.sweep()  # it is gone for the client already; its bytes go now
            return None
        return PendingUpload.from_record(record)

    def append(
        self,
        upload: PendingUpload,
        *,
        offset: int,
        stream: BinaryIO,
        content_length: int | None,
        checksum: Checksum | None = None,
    ) -> PendingUpload:
        """Store the bytes of ``stream`` at ``offset`` and return the upload as it then is.

        What arrived before the stream ended or broke stays stored, so the client
        resumes from there; with a ``checksum``, only a whole body that matches it is
        kept. Once the last byte is stored the upload is sealed: its GridFS file is
        complete.

        Raises:
            ApiError: 404 the upload is gone; 409 ``offset`` is not the upload's offset;
                413 more bytes than the upload's length; 415 its first bytes are no
                audio/video container (and the upload is removed); 423 another request
                is writing to it; 460 the body does not match ``checksum``; whatever
                ``stream.read`` raises (408 from the watchdog).
            TransientError: MongoDB failed.
        """
        if offset != upload.offset:
            raise _offset_mismatch(upload.offset)
        if content_length is not None and offset + content_length > upload.length:
            raise _too_long(upload.length)
        if upload.sealed:
            return upload
        record, token = self._lock(upload.video_fid, upload.owner)
        if record["offset"] != offset or record["sealed"]:
            # Another request moved it on (or finished it) since the caller looked.
            self._save(record, token, offset=record["offset"], tail=record["tail"], release=True)
            raise _offset_mismatch(record["offset"])
        return PendingUpload.from_record(self._receive(record, token, stream, checksum))

    def mark_accepted(self, upload: PendingUpload) -> PendingUpload:
        """Record that the sealed upload's job exists.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("recording an accepted upload"):
            record = self._records.find_one_and_update(
                {"_id": upload.video_fid},
                {"$set": {"accepted": True, "expires_at": self._clock() + self.expiry}},
                projection={"tail": 0},
                return_document=pymongo.ReturnDocument.AFTER,
            )
        return PendingUpload.from_record(record) if record else upload

    def forget(self, upload: PendingUpload) -> None:
        """Drop the record of an upload whose bytes were removed elsewhere.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("removing an upload"):
            self._records.delete_one({"_id": upload.video_fid})

    def terminate(self, upload: PendingUpload) -> None:
        """Remove an upload and, unless a job owns them now, its bytes.

        Raises:
            ApiError: 404 the upload is gone; 423 a request is writing to it.
            TransientError: MongoDB failed.
        """
        record, _ = self._lock(upload.video_fid, upload.owner)
        self._remove(record)

    def sweep(self) -> int:
        """Remove the uploads that expired, with their bytes; return how many.

        Raises:
            TransientError: MongoDB failed.
        """
        removed = 0
        for _ in range(SWEEP_BATCH):
            now = self._clock()
            with translate_errors("claiming an expired upload"):
                record = self._records.find_one_and_update(
                    {"expires_at": {"$lte": now}, **_unlocked(now)},
                    {"$set": {"lock_holder": uuid.uuid4().hex, "lock_until": now + self._lease}},
                    projection={"tail": 0},
                )
            if record is None:
                break
            self._remove(record)
            removed += 1
        if removed:
            log.info("removed %d expired resumable uploads", removed)
        return removed

    def keep_sweeping(self) -> None:
        """Make sure a thread of this process sweeps every ``SWEEP_INTERVAL_S``; cheap to repeat.

        Started on first use in the serving process: a thread made before gunicorn
        forks its workers would not exist in them.
        """
        if self._sweeper_pid == os.getpid():
            return
        with self._sweep_lock:
            if self._sweeper_pid == os.getpid() or self._closed.is_set():
                return
            self._sweeper_pid = os.getpid()
            threading.Thread(target=self._sweep_forever, name="tus-sweeper", daemon=True).start()

    def close(self) -> None:
        """Stop the sweeping thread."""
        self._closed.set()

    def _sweep_forever(self) -> None:
        while not self._closed.wait(SWEEP_INTERVAL_S):
            try:
                self.sweep()
            except TransientError as exc:
                log.warning("could not sweep expired uploads: %s", exc)
            except Exception:  # a bug must not end the sweeping for good
                log.exception("sweeping expired uploads failed")

    def _remove(self, record: dict[str, Any]) -> None:
        """Delete an upload's bytes (unless its job has them), then its record."""
        keep = record.get("accepted") or (
            record.get("sealed") and self._jobs.get(record["job_id"]) is not None
        )
        if not keep:
            self._bucket.delete_pieces(record["_id"])
        # The record last: while it is there, a sweep finds the bytes by it.
        with translate_errors("removing an upload"):
            self._records.delete_one({"_id": record["_id"]})

    def _lock(self, record_id: ObjectId, owner: str) -> tuple[dict[str, Any], str]:
        """Take the upload's lock; return its record and the lock's token.

        Raises:
            ApiError: 404 the upload is gone or expired; 423 someone else holds the lock.
            TransientError: MongoDB failed.
        """
        token = uuid.uuid4().hex
        now = self._clock()
        with translate_errors("locking an upload"):
            record = self._records.find_one_and_update(
                {"_id": record_id, "owner": owner, "expires_at": {"$gt": now}, **_unlocked(now)},
                {"$set": {"lock_holder": token, "lock_until": now + self._lease}},
                return_document=pymongo.ReturnDocument.AFTER,
            )
            if record is None:
                exists = self._records.count_documents(
                    {"_id": record_id, "owner": owner, "expires_at": {"$gt": now}}, limit=1
                )
        if record is None:
            raise _busy() if exists else _not_found()
        return record, token

    def _save(
        self,
        record: dict[str, Any],
        token: str,
        *,
        offset: int,
        tail: bytes | bytearray,
        container: str | None = None,
        sealed: bool = False,
        release: bool,
    ) -> dict[str, Any]:
        """Record the upload's progress while holding its lock; return the record.

        Raises:
            ApiError: 423 the lock's lease ran out and another request took it.
            TransientError: MongoDB failed.
        """
        now = self._clock()
        changes: dict[str, Any] = {
            "offset": offset,
            "tail": bytes(tail),
            "container": container or record.get("container"),
            "sealed": sealed or bool(record.get("sealed")),
            "expires_at": now + self.expiry,
            "lock_holder": None if release else token,
            "lock_until": None if release else now + self._lease,
        }
        with translate_errors("recording an upload's progress"):
            saved = self._records.find_one_and_update(
                {"_id": record["_id"], "lock_holder": token},
                {"$set": changes},
                projection={"tail": 0},
                return_document=pymongo.ReturnDocument.AFTER,
            )
        if saved is None:
            raise _busy()
        return saved

    def _receive(
        self, record: dict[str, Any], token: str, stream: BinaryIO, checksum: Checksum | None
    ) -> dict[str, Any]:
        """Append the stream's bytes under the lock ``token``; release it whatever happens."""
        file_id, length = record["_id"], record["length"]
        offset = record["offset"]
        # The bytes of the chunk being filled: at most one chunk is ever held.
        tail = bytearray(record["tail"] or b"")
        number = (offset - len(tail)) // CHUNK_SIZE
        container = record.get("container")
        # What the record says is stored. With a checksum, nothing of this request counts
        # until the whole body is verified: chunks it stored are rewritten on the retry.
        durable = (offset, bytes(tail))
        digest = hashlib.new(checksum.algorithm, usedforsecurity=False) if checksum else None
        try:
            while offset < length:
                piece = stream.read(READ_SIZE)
                if not piece:
                    break
                if offset + len(piece) > length:
                    raise _too_long(length)
                if digest is not None:
                    digest.update(piece)
                tail += piece
                offset += len(piece)
                if (
                    container is None
                    and number == 0
                    and (len(tail) >= SNIFF_BYTES or offset == length)
                ):
                    container = sniff_container(bytes(tail[:SNIFF_BYTES]))
                    if container is None:
                        raise _NotMedia
                while len(tail) >= CHUNK_SIZE:
                    self._bucket.put_chunk(file_id, number, bytes(tail[:CHUNK_SIZE]))
                    del tail[:CHUNK_SIZE]
                    number += 1
                    if digest is None:
                        durable = (number * CHUNK_SIZE, b"")
                    # This also renews the lease.
                    record = self._save(
                        record,
                        token,
                        offset=durable[0],
                        tail=durable[1],
                        container=container,
                        release=False,
                    )
            if checksum is not None and digest is not None and digest.digest() != checksum.digest:
                raise ApiError(
                    460,
                    "checksum_mismatch",
                    "The body does not match Upload-Checksum; nothing of it was kept.",
                )
            durable = (offset, bytes(tail))
            if offset < length:
                return self._save(
                    record, token, offset=offset, tail=tail, container=container, release=True
                )
            if tail:
                self._bucket.put_chunk(file_id, number, bytes(tail))
            self._bucket.seal(
                file_id,
                length=length,
                filename=record["filename"],
                metadata={"owner": record["owner"], "job_id": record["job_id"]},
            )
            return self._save(
                record,
                token,
                offset=length,
                tail=b"",
                container=container,
                sealed=True,
                release=True,
            )
        except _NotMedia:
            self._remove(record)
            raise _not_media() from None
        except BaseException:
            if digest is None:
                durable = (offset, bytes(tail))  # keep what arrived: the client resumes after it
            try:
                self._save(
                    record,
                    token,
                    offset=durable[0],
                    tail=durable[1],
                    container=container,
                    release=True,
                )
            except (TransientError, ApiError) as exc:
                log.warning("could not record the progress of upload %s: %s", file_id, exc)
            raise


class _NotMedia(Exception):
    """The upload's first bytes are no audio/video container."""


def _unlocked(now: datetime) -> dict[str, Any]:
    return {"$or": [{"lock_until": None}, {"lock_until": {"$lte": now}}]}


def _parse_id(upload_id: str) -> ObjectId | None:
    try:
        return ObjectId(upload_id)
    except (InvalidId, TypeError):
        return None


def _offset_mismatch(offset: int) -> ApiError:
    return ApiError(
        409,
        "offset_mismatch",
        f"Upload-Offset does not match the upload's offset, {offset}.",
        headers={"Upload-Offset": str(offset)},
        extra={"offset": offset},
    )


def _too_long(length: int) -> ApiError:
    return ApiError(
        413, "exceeds_upload_length", f"The bytes sent go beyond the upload's length, {length}."
    )
