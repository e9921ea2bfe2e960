"""Handle one message from the video queue: make the job's output exactly once.

The output is the audio in the job's format, with what its options add: a cover
(``converter.cover``), normalised loudness (``converter.transcode``), tracks
(``converter.tracks``) and a waveform (``converter.waveform``).

The steps are each safe to repeat, because a message can arrive again after a
crash at any point: a finished job is only announced again (notification is
idempotent), an output already stored for the job is reused rather than made
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
from converter.cover import embed_cover, take_cover
from converter.fetch import fetch_source
from converter.tracks import Track, cut_tracks, plan_tracks, track_filename
from converter.transcode import MAX_MEDIA_SECONDS, MediaInfo, TranscodeResult, probe, transcode
from converter.waveform import peaks

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
            mp3_fid, results = self._stored_output(job_id) or self._convert(job)
        except PermanentError as exc:
            log.warning("job %s failed: %s", job_id, exc)
            if self._jobs.fail(job_id, error=str(exc)):
                metrics.JOBS_FINISHED.labels("failed").inc()
            self._announce(job_id)
            return
        if self._jobs.finish(job_id, mp3_fid=mp3_fid, results=results):
            metrics.JOBS_FINISHED.labels("done").inc()
        else:
            self._drop_unless_kept(job_id, mp3_fid)
        self._announce(job_id)

    def _drop_unless_kept(self, job_id: str, mp3_fid: ObjectId) -> None:
        """Delete the MP3 of a delivery that lost the race to finish, unless the job has it.

        A duplicate delivery may have found this very MP3 (``_stored_output``) and finished
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

    def _stored_output(self, job_id: str) -> tuple[ObjectId, dict[str, Any]] | None:
        """Return the output an earlier delivery stored for the job, with its results.

        The output is stored last, after its tracks, with what the job records of the
        conversion (``results``), so finding it means nothing is left to do.
        """
        existing = self._storage.mp3s.find_one(
            {"metadata.job_id": job_id, "metadata.track": {"$exists": False}}
        )
        if existing is None:
            return None
        log.info("job %s already has its output %s; reusing it", job_id, existing["_id"])
        return existing["_id"], dict((existing.get("metadata") or {}).get("results") or {})

    def _convert(self, job: dict[str, Any]) -> tuple[ObjectId, dict[str, Any]]:
        """Make the job's output (and its tracks), store them, and return the output's id
        with what the job records of the conversion (``JobStore.finish``'s ``results``)."""
        job_id = job["_id"]
        options = Options.from_dict(job.get("options"))
        if options.title is None:
            # The ID3 title defaults to the name the user gave the video.
            options = dataclasses.replace(
                options, title=PurePosixPath(job.get("filename") or "").stem or None
            )
        with tempfile.TemporaryDirectory(dir=self._workdir, prefix=f"job-{job_id}-") as tmp:
            workdir = Path(tmp)
            output = options.output
            video_path, output_path = workdir / "video", workdir / f"audio.{output.extension}"
            self._spool(job, video_path)
            info = probe(video_path)
            # What cannot be made fails the job before the conversion: a split on chapters
            # the video lacks or into too many tracks, a cover from a file without a picture.
            plan_tracks(info, options)
            cover = take_cover(video_path, info, options, workdir) if options.wants_cover else None
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
            if cover is not None:
                embed_cover(output_path, output, cover)
            results: dict[str, Any] = {}
            if result.loudness is not None:
                results["loudness"] = result.loudness
            if options.split is not None:
                # Before the whole output, whose storing marks the conversion complete.
                results["tracks"] = self._store_tracks(
                    job, options, info, output_path, result.duration, workdir, cover=cover
                )
            waveform = self._waveform(job_id, output_path, result)
            with output_path.open("rb") as output_file:
                mp3_fid = self._storage.mp3s.put(
                    output_file,
                    output_filename(job.get("filename"), output),
                    {
                        "owner": job["owner"],
                        "job_id": job_id,
                        "format": output.name,
                        "original_filename": job.get("filename"),
                        "video_fid": job["video_fid"],
                        "results": results,
                        # Kept with the file, so it goes when the file does.
                        "waveform": waveform,
                    },
                )
            return mp3_fid, results

    def _spool(self, job: dict[str, Any], video_path: Path) -> None:
        """Write the job's video to ``video_path``: from GridFS, or fetched from its URL."""
        with video_path.open("wb") as video_file:
            if job.get("source_url"):
                size = fetch_source(
                    job,
                    video_file,
                    videos=self._storage.videos,
                    guard=self._guard,
                    heartbeat=lambda: self._progress(job["_id"], 0),
                )
                self._jobs.record_size(job["_id"], size)
            else:
                self._storage.videos.download_to(job["video_fid"], video_file)

    def _store_tracks(
        self,
        job: dict[str, Any],
        options: Options,
        info: MediaInfo,
        output_path: Path,
        duration: float | None,
        workdir: Path,
        *,
        cover: bytes | None,
    ) -> list[dict[str, Any]]:
        """Cut the made output into the job's tracks, store each, and return their records.

        Planned again with the output's measured length: the probe's may be rough, or
        unknown. Tracks of an earlier delivery that died before storing the output are
        left to the janitor, which deletes files no job refers to once the job finishes.
        """
        output = options.output
        plans = plan_tracks(info, options, output_duration=duration)
        stored: list[dict[str, Any]] = []

        def store(track: Track) -> None:
            filename = track_filename(job.get("filename"), track, len(plans), output)
            if cover is not None:
                # A copied cut keeps the cover stream of an MP3, M4A or FLAC, but an Ogg
                # file carries its picture in a comment, which the cut does not copy.
                embed_cover(track.path, output, cover)
            with track.path.open("rb") as track_file:
                fid = self._storage.mp3s.put(
                    track_file,
                    filename,
                    {
                        "owner": job["owner"],
                        "job_id": job["_id"],
                        "format": output.name,
                        "track": track.number,
                        "video_fid": job["video_fid"],
                    },
                )
            track.path.unlink()  # one track at a time on disk besides the whole
            stored.append(
                {
                    "fid": fid,
                    "number": track.number,
                    "title": track.title,
                    "start": round(track.start, 3),
                    "duration": round(track.duration, 3),
                    "size": track.size,
                    "filename": filename,
                }
            )
            # Keeps the job fresh, so the janitor never takes a long split for a stall.
            self._progress(job["_id"], 100)

        with self._stall.working():
            cut_tracks(
                output_path,
                plans,
                output,
                options,
                workdir,
                heartbeat=self._stall.progressed,
                cancel=self._cancel,
                on_track=store,
            )
        log.info("stored %d tracks of job %s", len(stored), job["_id"])
        return stored

    def _waveform(
        self, job_id: str, output_path: Path, result: TranscodeResult
    ) -> dict[str, Any] | None:
        """Return the waveform of the made output, or None if its sound cannot be measured.

        A re-encode measured it in its own run (``result.waveform``); a stream copy, or a
        conversion that could not, gets a pass over the file. A file the converter made
        and checked, yet the pass cannot read, is still a fine output: it is stored
        without a waveform rather than failing the job. The machine's faults
        (``TransientError``) retry the job like a conversion's.
        """
        if result.waveform is not None:
            return result.waveform.as_dict()
        try:
            with self._stall.working():
                waveform = peaks(
                    output_path,
                    result.duration,
                    heartbeat=self._stall.progressed,
                    cancel=self._cancel,
                    max_media_seconds=self._max_media_seconds,
                )
        except PermanentError as exc:
            log.warning("job %s: no waveform, as the output could not be measured: %s", job_id, exc)
            return None
        return waveform.as_dict()

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
