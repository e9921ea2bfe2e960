"""Handle one message from the video queue: make the job's MP3 exactly once.

The steps are each safe to repeat, because a message can arrive again after a
crash at any point: a finished job is only announced again (notification is
idempotent), an MP3 already stored for the job is reused rather than made
twice, and every job transition is conditional (``common.jobs``).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
from pathlib import Path, PurePosixPath
from typing import Any

from bson import ObjectId

from common.config import EgressConfig
from common.egress import EgressGuard
from common.errors import PermanentError, TransientError
from common.jobs import DONE, FAILED, JobStore, output_filename
from common.messages import job_id_in, mp3_message, read_video_message
from common.messaging import Delivery, Publisher
from common.options import Options
from common.storage import Storage
from common.worker import StallWatch
from converter import metrics
from converter.fetch import fetch_source
from converter.transcode import MAX_MEDIA_SECONDS, probe, transcode

log = logging.getLogger(__name__)


class Converter:
    """Turn video-queue messages into stored MP3s and mp3-queue announcements."""

    def __init__(
        self,
        *,
        storage: Storage,
        jobs: JobStore,
        publisher: Publisher,
        mp3_queue: str,
        workdir: str,
        cancel: threading.Event | None = None,
        max_media_seconds: float = MAX_MEDIA_SECONDS,
        stall: StallWatch | None = None,
        guard: EgressGuard | None = None,
    ) -> None:
        self._storage = storage
        # What fetches the videos of jobs imported by URL (converter.fetch).
        self._guard = guard or EgressGuard(EgressConfig())
        self._jobs = jobs
        self._publisher = publisher
        self._mp3_queue = mp3_queue
        self._workdir = workdir
        self._cancel = cancel
        self._max_media_seconds = max_media_seconds
        # Nobody asks an unshared watch, so without one nothing is reported.
        self._stall = stall or StallWatch(float("inf"))

    def handle(self, message: dict[str, Any], delivery: Delivery) -> None:
        """Convert the job in ``message``, or re-announce it if it already finished.

        Raises:
            PermanentError: the message is malformed.
            TransientError: a store, the broker or ffmpeg failed; retry later.
        """
        job_id = read_video_message(message)
        job = self._jobs.start(job_id)
        if job is None:
            self._redelivered(job_id)
            return
        try:
            mp3_fid = self._stored_mp3(job_id) or self._convert(job)
        except PermanentError as exc:
            log.warning("job %s failed: %s", job_id, exc)
            if self._jobs.fail(job_id, error=str(exc)):
                metrics.JOBS_FINISHED.labels("failed").inc()
            self._announce(job_id)
            return
        if self._jobs.finish(job_id, mp3_fid=mp3_fid):
            metrics.JOBS_FINISHED.labels("done").inc()
        else:
            self._drop_unless_kept(job_id, mp3_fid)
        self._announce(job_id)

    def _drop_unless_kept(self, job_id: str, mp3_fid: ObjectId) -> None:
        """Delete the MP3 of a delivery that lost the race to finish, unless the job has it.

        A duplicate delivery may have found this very MP3 (``_stored_mp3``) and finished
        the job with it first; only an MP3 that no job refers to is this delivery's to drop.
        """
        job = self._jobs.get(job_id)
        if job is not None and job.get("mp3_fid") == mp3_fid:
            log.info("job %s was finished by another delivery with this MP3; keeping it", job_id)
            return
        log.info("job %s ended elsewhere while converting; dropping its MP3", job_id)
        self._storage.mp3s.delete(mp3_fid)

    def give_up(self, message: dict[str, Any] | None, error: Exception) -> None:
        """Fail the job of a message that kept failing, and tell its owner."""
        job_id = job_id_in(message)
        if job_id is None:
            return
        reason = "the conversion could not be completed; please try again later"
        if isinstance(error, PermanentError):
            reason = str(error)
        if self._jobs.fail(job_id, error=reason):
            metrics.JOBS_FINISHED.labels("failed").inc()
            self._announce(job_id)

    def _redelivered(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            log.info("job %s was deleted; nothing to do", job_id)
        elif job["status"] in (DONE, FAILED):
            # Announcing again is harmless (one email per job) and covers a
            # crash between finishing the job and publishing its result.
            log.info("job %s already %s; announcing it again", job_id, job["status"])
            self._announce(job_id)

    def _stored_mp3(self, job_id: str) -> ObjectId | None:
        existing = self._storage.mp3s.find_one({"metadata.job_id": job_id})
        if existing is not None:
            log.info("job %s already has its MP3 %s; reusing it", job_id, existing["_id"])
            return existing["_id"]
        return None

    def _convert(self, job: dict[str, Any]) -> ObjectId:
        job_id = job["_id"]
        options = Options.from_dict(job.get("options"))
        if options.title is None:
            # The ID3 title defaults to the name the user gave the video.
            options = dataclasses.replace(
                options, title=PurePosixPath(job.get("filename") or "").stem or None
            )
        with tempfile.TemporaryDirectory(dir=self._workdir, prefix=f"job-{job_id}-") as tmp:
            output = options.output
            video_path, output_path = Path(tmp) / "video", Path(tmp) / f"audio.{output.extension}"
            with video_path.open("wb") as video_file:
                if job.get("source_url"):
                    size = fetch_source(
                        job,
                        video_file,
                        videos=self._storage.videos,
                        guard=self._guard,
                        heartbeat=lambda: self._progress(job_id, 0),
                    )
                    self._jobs.record_size(job_id, size)
                else:
                    self._storage.videos.download_to(job["video_fid"], video_file)
            info = probe(video_path)
            with metrics.CONVERSIONS_ACTIVE.track_inprogress(), self._stall.working():
                result = transcode(
                    video_path,
                    output_path,
                    options,
                    info=info,
                    on_progress=lambda percent: self._progress(job_id, percent),
                    heartbeat=self._stall.progressed,
                    cancel=self._cancel,
                    max_media_seconds=self._max_media_seconds,
                )
            mode = "copy" if result.stream_copied else "reencode"
            metrics.CONVERSION_SECONDS.labels(mode).observe(result.elapsed)
            with output_path.open("rb") as output_file:
                return self._storage.mp3s.put(
                    output_file,
                    output_filename(job.get("filename"), output),
                    {
                        "owner": job["owner"],
                        "job_id": job_id,
                        "format": output.name,
                        "original_filename": job.get("filename"),
                        "video_fid": job["video_fid"],
                    },
                )

    def _progress(self, job_id: str, percent: int) -> None:
        try:
            self._jobs.set_progress(job_id, percent)
        except TransientError as exc:
            # Progress is a nicety: a store hiccup must not cost the conversion.
            log.warning("could not record progress of job %s: %s", job_id, exc)

    def _announce(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            return
        message = mp3_message(job)
        self._publisher.publish(self._mp3_queue, message.body, message_id=message.message_id)
