"""Housekeeping the converters share: revive stalled jobs, delete expired ones.

Every converter runs a janitor thread. A job stuck in ``processing`` with no
progress for ``stale_after`` lost its worker in a way the broker could not see
(or its message was lost): it goes back on the queue, or fails once it has used
up its attempts. A job still not marked enqueued ``abandoned_after`` its
creation belongs to an upload the gateway refused (or died during) and could
not clean up: it is deleted with its video. Finished jobs older than the
retention period are deleted with their video, output and tracks. Each step claims
its job atomically, so several janitors never do the same work twice.

Last, files no job refers to are deleted. MP3s (outputs and the tracks of split jobs,
which ``JobStore.referenced_mp3s`` counts as referenced): what a converter left behind when
it died between storing an MP3 and recording it, or before dropping the MP3 of a
delivery that lost the race to finish (see ``Janitor._sweep_orphans`` for why this
can never take an MP3 a job still needs). Videos: the pieces of an upload whose
gateway died mid-request or lost MongoDB while cleaning up, which no job and no
resumable upload names once ``orphaned_video_after`` has passed since the upload
began (see ``Janitor._sweep_orphan_videos``).

And deleted accounts are finished: the jobs and files of an owner whose account
auth deleted, which ``DELETE /me`` could not erase in its request, go a batch a
round (``common.accounts``); requests auth never confirmed are dropped after a day.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from bson import ObjectId

from common.accounts import ERASE_BATCH, AccountDeletions, erase
from common.errors import TransientError
from common.jobs import JobStore
from common.messages import mp3_message, video_message
from common.messaging import Publisher
from common.mongo import utcnow
from common.storage import Storage
from converter import metrics

log = logging.getLogger(__name__)

STALLED = "the conversion stalled and was given up after {attempts} attempts"


@dataclass
class Report:
    """What one round of housekeeping did."""

    requeued: int = 0
    failed: int = 0
    abandoned: int = 0
    expired: int = 0
    orphans: int = 0
    orphaned_videos: int = 0
    accounts_erased: int = 0


class Janitor:
    """Requeue stalled jobs, delete abandoned uploads, expired jobs and orphaned MP3s."""

    def __init__(
        self,
        *,
        storage: Storage,
        jobs: JobStore,
        publisher: Publisher,
        video_queue: str,
        mp3_queue: str,
        stale_after: timedelta,
        abandoned_after: timedelta,
        retention: timedelta | None,
        max_attempts: int,
        orphaned_video_after: timedelta,
        orphan_batch: int = 100,
    ) -> None:
        self._storage = storage
        self._jobs = jobs
        self._publisher = publisher
        self._video_queue = video_queue
        self._mp3_queue = mp3_queue
        self._stale_after = stale_after
        self._abandoned_after = abandoned_after
        self._retention = retention
        self._max_attempts = max_attempts
        self._orphan_batch = orphan_batch
        # Where the orphan sweep goes on next round: (uploadDate, _id) of the last MP3 looked at.
        self._orphan_position: tuple[datetime, ObjectId] | None = None
        self._orphaned_video_after = orphaned_video_after
        self._orphan_video_position: ObjectId | None = None  # the same, for videos
        self._deletions = AccountDeletions(storage.client, storage.config)

    def run_once(self) -> Report:
        """Do one round: every stalled job, then a batch each of abandoned, expired and orphaned.

        Raises:
            TransientError: MongoDB or the broker is down; the next round tries again.
        """
        report = Report()
        while (job := self._jobs.requeue_stale(idle_for=self._stale_after)) is not None:
            if job.get("attempts", 0) >= self._max_attempts:
                reason = STALLED.format(attempts=job["attempts"])
                if self._jobs.fail(job["_id"], error=reason):
                    metrics.JOBS_FINISHED.labels("failed").inc()
                    message = mp3_message(self._jobs.get(job["_id"]) or job)
                    self._publisher.publish(
                        self._mp3_queue, message.body, message_id=message.message_id
                    )
                    report.failed += 1
                continue
            log.warning("job %s stalled in processing; putting it back on the queue", job["_id"])
            message = video_message(job)
            self._publisher.publish(self._video_queue, message.body, message_id=message.message_id)
            report.requeued += 1
        for job in self._jobs.abandoned_before(utcnow() - self._abandoned_after):
            if self._remove_abandoned(job):
                report.abandoned += 1
        if self._retention is not None:
            for job in self._jobs.finished_before(utcnow() - self._retention):
                self._expire(job)
                report.expired += 1
        report.orphans = self._sweep_orphans()
        report.orphaned_videos = self._sweep_orphan_videos()
        report.accounts_erased = self._finish_account_deletions()
        return report

    def _finish_account_deletions(self) -> int:
        """Erase the jobs of deleted accounts, a batch of each a round; return how many finished."""
        self._deletions.drop_stale()
        finished = 0
        for deletion in self._deletions.confirmed():
            owner, requested_at = deletion["_id"], deletion["requested_at"]
            left = erase(
                owner, requested_at, jobs=self._jobs, storage=self._storage, limit=ERASE_BATCH
            )
            if left:
                continue
            self._deletions.finish(owner, requested_at)
            log.info("finished deleting an account's data")
            finished += 1
        return finished

    def _remove_abandoned(self, job: dict) -> bool:
        # The record goes only if it is still unqueued, so a job whose message did
        # get through is never lost.
        self._storage.delete_files_of(job)
        if not self._jobs.delete_abandoned(job["_id"]):
            return False
        log.warning("deleted job %s: its upload was never accepted", job["_id"])
        return True

    def _expire(self, job: dict) -> None:
        # A janitor that dies between the two finds the record next round and finishes.
        self._storage.delete_files_of(job)
        self._jobs.delete(job["_id"])
        log.info("deleted job %s and its files (past retention)", job["_id"])

    def _sweep_orphans(self) -> int:
        """Delete the MP3s of the next batch that no job refers to; return how many.

        An MP3 is kept while its job (``metadata.job_id``) is unfinished, whatever else
        is true: a converter may have stored it moments ago and be about to record it
        (``finish``), or a redelivery may be about to reuse it (``_stored_output`` finds it
        by that job id) however long the message waits in the queue. Only ``finish``
        points a job at an MP3, only while the job is processing, and a finished or
        deleted job never becomes unfinished again. So the job check comes first and
        the reference check after it: a job found finished has its ``mp3_fid`` fixed
        by then, and the MP3 is kept if that (or any job) names it. Checked the other
        way round, a job finishing in between would lose its new MP3.

        The grace period is ``stale_after``, after which the system takes a silent
        worker for dead anyway. The converter records an MP3 one round trip after
        storing it (``uploadDate`` is set when the file completes), so the grace
        exceeds that by far and also absorbs clock skew between hosts; it is what
        keeps an MP3 without a job id in its metadata safe while it is young.
        """
        files = self._storage.mp3s.stored_before(
            utcnow() - self._stale_after, after=self._orphan_position, limit=self._orphan_batch
        )
        if not files:
            self._orphan_position = None
            return 0
        job_of = {file["_id"]: _job_id_of(file) for file in files}
        unfinished = self._jobs.unfinished_among(filter(None, job_of.values()))
        referenced = self._jobs.referenced_mp3s(job_of)
        removed = 0
        for mp3_fid, job_id in job_of.items():
            if mp3_fid in referenced or job_id in unfinished:
                continue
            if self._storage.mp3s.delete(mp3_fid):
                log.warning("deleted MP3 %s of job %s: no job refers to it", mp3_fid, job_id)
                metrics.ORPHANS_REMOVED.labels("mp3").inc()
                removed += 1
        # Next round goes on past this batch (a round cut short by an outage looks at it
        # again); after a short batch, which reached the young end, it starts over.
        full = len(files) == self._orphan_batch
        self._orphan_position = (files[-1]["uploadDate"], files[-1]["_id"]) if full else None
        return removed

    def _sweep_orphan_videos(self) -> int:
        """Delete the videos of the next batch that nothing refers to; return how many.

        A video is another's until its upload could not possibly still be under way:
        ``orphaned_video_after`` since the upload began (its id's time) exceeds the
        longest request the gateway lets an upload take. Past that, a video that no
        job points to and that is not a resumable upload (whose record the gateway
        keeps while the client may come back) belongs to nobody. The job is created
        moments after its video is whole, long inside that time.
        """
        started = utcnow() - self._orphaned_video_after
        fids = self._storage.videos.begun_before(
            started, after=self._orphan_video_position, limit=self._orphan_batch
        )
        if not fids:
            self._orphan_video_position = None
            return 0
        kept = self._jobs.referenced_videos(fids) | self._storage.resumable_among(fids)
        removed = 0
        for video_fid in fids:
            if video_fid in kept:
                continue
            self._storage.videos.delete_pieces(video_fid)
            log.warning("deleted video %s: no job or upload refers to it", video_fid)
            metrics.ORPHANS_REMOVED.labels("video").inc()
            removed += 1
        full = len(fids) == self._orphan_batch
        self._orphan_video_position = fids[-1] if full else None
        return removed

    def run_forever(self, stop: threading.Event, *, interval: float) -> None:
        """Run a round every ``interval`` seconds until ``stop`` is set."""
        while not stop.wait(interval):
            try:
                report = self.run_once()
            except TransientError as exc:
                log.warning("housekeeping skipped a round: %s", exc)
                continue
            except Exception:  # the loop's edge: housekeeping must not die with one bad job
                log.exception("housekeeping round failed")
                continue
            if any(vars(report).values()):
                log.info("housekeeping: %s", report)


def _job_id_of(file: dict) -> str | None:
    """Return the job id a stored file's metadata names, or None."""
    job_id = (file.get("metadata") or {}).get("job_id")
    return job_id if isinstance(job_id, str) else None
