"""Job records: the ``jobs`` collection the gateway writes and the workers update.

A job moves ``queued -> processing -> done | failed``. Every transition is a
conditional update, so a redelivered message or a late worker cannot move a
finished job backwards; the functions return None or False when the job was
not in a state that allowed the change.

The gateway records a job, publishes its message, then sets ``enqueued_at``:
only then was the upload accepted. A queued job without ``enqueued_at`` for
long is what an upload left behind when the client got an error (or none) and
the gateway could not clean up; the converters' janitor removes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

import pymongo
import pymongo.collection
from bson import ObjectId

from common.config import MongoConfig
from common.mongo import parse_object_id, translate_errors, utcnow
from common.options import Format, format_named

QUEUED, PROCESSING, DONE, FAILED = "queued", "processing", "done", "failed"
STATUSES = (QUEUED, PROCESSING, DONE, FAILED)
FINISHED = (DONE, FAILED)

# A job the gateway recorded but never saw on the queue. Only an explicit null
# counts: records older than the field never get swept.
_ABANDONED = {"status": QUEUED, "enqueued_at": {"$type": "null"}}


def new_job_id() -> str:
    """Return a fresh, unguessable job id."""
    return uuid.uuid4().hex


def output_format(job: Mapping[str, Any]) -> Format:
    """Return the format a job's output is in (MP3 for a job that names none)."""
    return format_named((job.get("options") or {}).get("format"))


def output_filename(original: str | None, output: Format) -> str:
    """Return the output's name: the original file's name with the format's extension."""
    stem = PurePosixPath(original or "audio").stem or "audio"
    return f"{stem}.{output.extension}"


def files_of(job: Mapping[str, Any]) -> list[ObjectId]:
    """Return the ids of a job's outputs in the outputs' bucket: the whole, then its tracks."""
    fids = [job["mp3_fid"]] if job.get("mp3_fid") else []
    return fids + [track["fid"] for track in job.get("tracks") or ()]


def track_of(job: Mapping[str, Any], file_id: object) -> dict[str, Any] | None:
    """Return the track of a split job whose file has this id (an ObjectId or its hex), or None."""
    for track in job.get("tracks") or ():
        if str(track["fid"]) == str(file_id):
            return dict(track)
    return None


def public_view(job: Mapping[str, Any]) -> dict[str, Any]:
    """Return a job as the API shows it: string ids, ISO timestamps, no internals."""

    def iso(value: datetime | None) -> str | None:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None

    return {
        "job_id": job["_id"],
        "status": job["status"],
        "progress": job.get("progress", 0),
        "error": job.get("error"),
        "attempts": job.get("attempts", 0),
        "filename": job.get("filename"),
        "size": job.get("size"),
        "video_fid": str(job["video_fid"]) if job.get("video_fid") else None,
        "mp3_fid": str(job["mp3_fid"]) if job.get("mp3_fid") else None,
        "options": _as_asked(job.get("options", {}), job.get("clip_start")),
        "callback_url": job.get("callback_url"),
        "source_url": job.get("source_url"),
        "loudness": job.get("loudness"),
        "tracks": [_track_view(track) for track in job["tracks"]] if job.get("tracks") else None,
        "created_at": iso(job.get("created_at")),
        "started_at": iso(job.get("started_at")),
        "finished_at": iso(job.get("finished_at")),
    }


def _track_view(track: Mapping[str, Any]) -> dict[str, Any]:
    """Return one track of a split job as the API shows it: its file id as a string."""
    return {**track, "fid": str(track["fid"])}


def _as_asked(options: Mapping[str, Any], clip_start: float | None) -> dict[str, Any]:
    """Return options with the trim in the original video's times, as its owner gave it."""
    shown = dict(options)
    if clip_start:
        for name in ("start", "end"):
            if shown.get(name) is not None:
                shown[name] = round(shown[name] + clip_start, 6)
    return shown


@dataclass(frozen=True, slots=True)
class Activity:
    """How busy one owner is: jobs queued or processing, and jobs created lately."""

    active_jobs: int
    recent_jobs: int
    oldest_recent: datetime | None


# Indexes that earlier versions created and the ones above now cover (their prefixes).
SUPERSEDED_INDEXES = ("owner_1_created_at_-1", "owner_1_status_1_created_at_-1")


def jobs_collection(
    client: pymongo.MongoClient, config: MongoConfig
) -> pymongo.collection.Collection:
    """Return the collection the job records live in."""
    return client[config.videos_db]["jobs"]


class JobStore:
    """Read and move job records."""

    def __init__(self, client: pymongo.MongoClient, config: MongoConfig) -> None:
        self._jobs = jobs_collection(client, config)

    def ensure_indexes(self) -> None:
        """Create the indexes the API and workers query by; safe to repeat."""
        with translate_errors("creating job indexes"):
            # The job list's sort, tie-break included: without _id in the index, MongoDB
            # sorts all of an owner's jobs in memory for every page (seen with explain()).
            self._jobs.create_index([("owner", 1), ("created_at", -1), ("_id", -1)])
            self._jobs.create_index([("owner", 1), ("status", 1), ("created_at", -1), ("_id", -1)])
            existing = self._jobs.index_information()
            for superseded in SUPERSEDED_INDEXES:
                if superseded in existing:
                    self._jobs.drop_index(superseded)
            self._jobs.create_index("video_fid")
            self._jobs.create_index("mp3_fid", sparse=True)
            # Downloads and the janitor find a split job by any of its tracks.
            self._jobs.create_index("tracks.fid", sparse=True)
            self._jobs.create_index([("status", 1), ("updated_at", 1)])
            self._jobs.create_index([("status", 1), ("finished_at", 1)])
            self._jobs.create_index([("status", 1), ("created_at", 1)])
            # The admin API's list of every job, newest first, a page at a time.
            self._jobs.create_index([("created_at", -1), ("_id", -1)])

    def create(
        self,
        *,
        job_id: str,
        owner: str,
        video_fid: ObjectId,
        filename: str,
        size: int | None,
        options: Mapping[str, Any],
        callback_url: str | None = None,
        clip_start: float | None = None,
        source_url: str | None = None,
        source_max_bytes: int | None = None,
    ) -> dict[str, Any]:
        """Insert a queued job and return it.

        ``source_url``: the video is still to be fetched from there (``converter.fetch``)
        into ``video_fid``, at most ``source_max_bytes`` of it.

        ``clip_start``: the upload is a client's copy of the original's sound from that
        many seconds on, and the trim in ``options`` is in the copy's times.
        """
        now = utcnow()
        job = {
            "_id": job_id,
            "owner": owner,
            "status": QUEUED,
            "progress": 0,
            "error": None,
            "attempts": 0,
            "filename": filename,
            "size": size,
            "video_fid": video_fid,
            "mp3_fid": None,
            "options": dict(options),
            "callback_url": callback_url,
            "clip_start": clip_start,
            "source_url": source_url,
            "source_max_bytes": source_max_bytes,
            "created_at": now,
            "updated_at": now,
            "enqueued_at": None,
            "started_at": None,
            "finished_at": None,
            "notified_at": None,
            "webhook_done_at": None,
        }
        with translate_errors("creating a job"):
            self._jobs.insert_one(job)
        return job

    def mark_enqueued(self, job_id: str) -> bool:
        """Record that the job's message is on the queue; False if the job is gone."""
        with translate_errors("recording a queued job"):
            result = self._jobs.update_one({"_id": job_id}, {"$set": {"enqueued_at": utcnow()}})
        return result.matched_count == 1

    def get(self, job_id: str) -> dict[str, Any] | None:
        """Return the job with this id, or None."""
        with translate_errors("reading a job"):
            return self._jobs.find_one({"_id": str(job_id)})

    def get_owned(self, job_id: str, owner: str) -> dict[str, Any] | None:
        """Return the job if ``owner`` owns it; None for unknown ids and other people's jobs."""
        job = self.get(job_id)
        # Owner checked here, not in the query: MongoDB answers a query on _id alone by
        # its fast path, for less server CPU than the two-field one: docs/performance.md,
        # "The workarounds SecantusDB had justified", row "`get_owned` asks by `_id` alone".
        return job if job is not None and job.get("owner") == owner else None

    def find_by_file(self, file_id: object, owner: str) -> dict[str, Any] | None:
        """Return ``owner``'s job whose video, output or one of whose tracks has this id."""
        oid = parse_object_id(file_id)
        with translate_errors("reading a job"):
            return self._jobs.find_one(
                {
                    "owner": owner,
                    "$or": [{"mp3_fid": oid}, {"video_fid": oid}, {"tracks.fid": oid}],
                }
            )

    def list_owned(
        self, owner: str, *, status: str | None = None, limit: int = 20, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """Return one page of ``owner``'s jobs, newest first, and the total count."""
        return self.list_all(owner=owner, status=status, limit=limit, offset=offset)

    def list_all(
        self,
        *,
        owner: str | None = None,
        status: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """Return one page of every job (or ``owner``'s), newest first, and the total count."""
        query: dict[str, Any] = {}
        if owner is not None:
            query["owner"] = owner
        if status is not None:
            query["status"] = status
        with translate_errors("listing jobs"):
            total = self._jobs.count_documents(query)
            cursor = (
                self._jobs.find(query)
                .sort([("created_at", -1), ("_id", -1)])
                .skip(offset)
                .limit(limit)
            )
            return list(cursor), total

    def owned_after(
        self, owner: str, position: tuple[datetime, str] | None, *, limit: int
    ) -> list[dict[str, Any]]:
        """Return ``owner``'s next ``limit`` jobs, newest first, after ``(created_at, _id)``.

        A page found by where the last one ended, not by an offset, so walking every
        job of an owner costs one index scan, however many there are.
        """
        query: dict[str, Any] = {"owner": owner}
        if position is not None:
            created_at, job_id = position
            query["$or"] = [
                {"created_at": {"$lt": created_at}},
                {"created_at": created_at, "_id": {"$lt": job_id}},
            ]
        with translate_errors("listing jobs"):
            cursor = self._jobs.find(query).sort([("created_at", -1), ("_id", -1)]).limit(limit)
            return list(cursor)

    def owned_before(self, owner: str, moment: datetime, *, limit: int) -> list[dict[str, Any]]:
        """Return up to ``limit`` of ``owner``'s jobs created before ``moment``, oldest first."""
        with translate_errors("finding an owner's jobs"):
            cursor = (
                self._jobs.find({"owner": owner, "created_at": {"$lt": moment}})
                .sort([("created_at", 1), ("_id", 1)])
                .limit(limit)
            )
            return list(cursor)

    def count_owned_before(self, owner: str, moment: datetime) -> int:
        """Count ``owner``'s jobs created before ``moment``."""
        with translate_errors("counting an owner's jobs"):
            return self._jobs.count_documents({"owner": owner, "created_at": {"$lt": moment}})

    def activity(self, owner: str, *, since: datetime) -> Activity:
        """Count ``owner``'s queued and processing jobs, and the jobs created ``since``.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("counting jobs"):
            active = self._jobs.count_documents(
                {"owner": owner, "status": {"$in": [QUEUED, PROCESSING]}}
            )
            recent = {"owner": owner, "created_at": {"$gte": since}}
            count = self._jobs.count_documents(recent)
            oldest = (
                self._jobs.find_one(recent, {"created_at": 1}, sort=[("created_at", 1)])
                if count
                else None
            )
        return Activity(active, count, oldest["created_at"] if oldest else None)

    def counts_by_owner(self, owners: Iterable[str]) -> dict[str, tuple[int, int]]:
        """Return each owner's (queued and processing, all) job counts, in one aggregation.

        Raises:
            TransientError: MongoDB failed.
        """
        active = {"$cond": [{"$in": ["$status", [QUEUED, PROCESSING]]}, 1, 0]}
        with translate_errors("counting jobs"):
            rows = self._jobs.aggregate(
                [
                    {"$match": {"owner": {"$in": list(owners)}}},
                    {"$group": {"_id": "$owner", "active": {"$sum": active}, "total": {"$sum": 1}}},
                ]
            )
            return {row["_id"]: (row["active"], row["total"]) for row in rows}

    def counts_by_status(self) -> dict[str, int]:
        """Return how many jobs are in each state (every state, zero included).

        Raises:
            TransientError: MongoDB failed.
        """
        counts = dict.fromkeys(STATUSES, 0)
        with translate_errors("counting jobs"):
            for row in self._jobs.aggregate([{"$group": {"_id": "$status", "jobs": {"$sum": 1}}}]):
                counts[row["_id"]] = row["jobs"]
        return counts

    def start(self, job_id: str) -> dict[str, Any] | None:
        """Mark a queued (or retried) job processing and count the attempt; None if finished.

        ``attempts`` counts every start, whichever message or redelivery caused it.
        """
        now = utcnow()
        with translate_errors("starting a job"):
            return self._jobs.find_one_and_update(
                {"_id": job_id, "status": {"$in": [QUEUED, PROCESSING]}},
                {
                    "$set": {
                        "status": PROCESSING,
                        "progress": 0,
                        "started_at": now,
                        "updated_at": now,
                    },
                    "$inc": {"attempts": 1},
                },
                return_document=pymongo.ReturnDocument.AFTER,
            )

    def record_size(self, job_id: str, size: int) -> None:
        """Record the size of a processing job's video once it is fetched (an import by URL)."""
        with translate_errors("recording a video's size"):
            self._jobs.update_one(
                {"_id": job_id, "status": PROCESSING},
                {"$set": {"size": size, "updated_at": utcnow()}},
            )

    def set_progress(self, job_id: str, progress: int) -> None:
        """Record conversion progress (0-100) of a processing job."""
        with translate_errors("recording progress"):
            self._jobs.update_one(
                {"_id": job_id, "status": PROCESSING},
                {"$set": {"progress": max(0, min(100, int(progress))), "updated_at": utcnow()}},
            )

    def finish(
        self, job_id: str, *, mp3_fid: ObjectId, results: Mapping[str, Any] | None = None
    ) -> bool:
        """Mark a processing job done with its output; False if it was not processing.

        ``results``: what the conversion measured or made besides the output, kept on the
        job as they are: ``loudness`` (the measured input and output), ``tracks`` (the
        parts of a split job, each with its file id ``fid``).
        """
        now = utcnow()
        with translate_errors("finishing a job"):
            result = self._jobs.update_one(
                {"_id": job_id, "status": PROCESSING},
                {
                    "$set": {
                        "status": DONE,
                        "progress": 100,
                        "mp3_fid": mp3_fid,
                        "error": None,
                        "finished_at": now,
                        "updated_at": now,
                        **(results or {}),
                    }
                },
            )
        return result.modified_count == 1

    def fail(self, job_id: str, *, error: str) -> bool:
        """Mark an unfinished job failed with a readable reason; False if already finished."""
        now = utcnow()
        with translate_errors("failing a job"):
            result = self._jobs.update_one(
                {"_id": job_id, "status": {"$nin": list(FINISHED)}},
                {"$set": {"status": FAILED, "error": error, "finished_at": now, "updated_at": now}},
            )
        return result.modified_count == 1

    def requeue_stale(self, *, idle_for: timedelta) -> dict[str, Any] | None:
        """Put back one processing job untouched for ``idle_for`` (its worker died); None if none.

        The update is atomic, so of several janitors exactly one takes each job.
        """
        now = utcnow()
        with translate_errors("requeueing a stalled job"):
            return self._jobs.find_one_and_update(
                {"status": PROCESSING, "updated_at": {"$lt": now - idle_for}},
                {"$set": {"status": QUEUED, "progress": 0, "updated_at": now}},
                return_document=pymongo.ReturnDocument.AFTER,
            )

    def finished_before(self, moment: datetime, *, limit: int = 100) -> list[dict[str, Any]]:
        """Return up to ``limit`` jobs that finished before ``moment``, oldest first."""
        with translate_errors("finding expired jobs"):
            cursor = (
                self._jobs.find({"status": {"$in": list(FINISHED)}, "finished_at": {"$lt": moment}})
                .sort("finished_at", 1)
                .limit(limit)
            )
            return list(cursor)

    def abandoned_before(self, moment: datetime, *, limit: int = 100) -> list[dict[str, Any]]:
        """Return up to ``limit`` jobs created before ``moment`` whose upload never completed."""
        with translate_errors("finding abandoned uploads"):
            cursor = (
                self._jobs.find({**_ABANDONED, "created_at": {"$lt": moment}})
                .sort("created_at", 1)
                .limit(limit)
            )
            return list(cursor)

    def delete_abandoned(self, job_id: str) -> bool:
        """Delete a job whose upload never completed; False if it was queued or started since."""
        with translate_errors("deleting an abandoned upload"):
            return self._jobs.delete_one({"_id": job_id, **_ABANDONED}).deleted_count == 1

    def unfinished_among(self, job_ids: Iterable[str]) -> set[str]:
        """Return which of these jobs exist and are not finished (queued or processing).

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("finding unfinished jobs"):
            cursor = self._jobs.find(
                {"_id": {"$in": list(job_ids)}, "status": {"$nin": list(FINISHED)}}, {"_id": 1}
            )
            return {job["_id"] for job in cursor}

    def referenced_mp3s(self, mp3_fids: Iterable[ObjectId]) -> set[ObjectId]:
        """Return which of these output ids a job points to, as its output or one of its tracks.

        Raises:
            TransientError: MongoDB failed.
        """
        wanted = list(mp3_fids)
        with translate_errors("finding referenced MP3s"):
            cursor = self._jobs.find(
                {"$or": [{"mp3_fid": {"$in": wanted}}, {"tracks.fid": {"$in": wanted}}]},
                {"mp3_fid": 1, "tracks.fid": 1},
            )
            return {fid for job in cursor for fid in files_of(job)} & set(wanted)

    def referenced_videos(self, video_fids: Iterable[ObjectId]) -> set[ObjectId]:
        """Return which of these video ids a job points to.

        Raises:
            TransientError: MongoDB failed.
        """
        with translate_errors("finding referenced videos"):
            cursor = self._jobs.find({"video_fid": {"$in": list(video_fids)}}, {"video_fid": 1})
            return {job["video_fid"] for job in cursor}

    def delete(self, job_id: str) -> bool:
        """Delete a job record; False if it did not exist."""
        with translate_errors("deleting a job"):
            return self._jobs.delete_one({"_id": job_id}).deleted_count == 1
