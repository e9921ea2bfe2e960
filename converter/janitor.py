"""Housekeeping the converters share: revive stalled jobs, delete expired ones.

Every converter runs a janitor thread. A job stuck in ``processing`` with no
progress for ``stale_after`` lost its worker in a way the broker could not see
(or its message was lost): it goes back on the queue, or fails once it has used
up its attempts. A job still not marked enqueued ``abandoned_after`` its
creation belongs to an upload the gateway refused (or died during) and could
not clean up: it is deleted with its video. Finished jobs older than the
retention period are deleted with their video and MP3. Each step claims its
job atomically, so several janitors never do the same work twice.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from common import metrics
from common.errors import TransientError
from common.jobs import JobStore, utcnow, video_message
from common.messaging import Publisher
from common.storage import Storage
from converter.handler import result_message

log = logging.getLogger(__name__)

STALLED = "the conversion stalled and was given up after {attempts} attempts"


@dataclass
class Report:
    """What one round of housekeeping did."""

    requeued: int = 0
    failed: int = 0
    abandoned: int = 0
    expired: int = 0


class Janitor:
    """Requeue stalled jobs, delete abandoned uploads and expired jobs."""

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

    def run_once(self) -> Report:
        """Do one round: every stalled job, then a batch each of abandoned and expired ones.

        Raises:
            TransientError: MongoDB or the broker is down; the next round tries again.
        """
        report = Report()
        while (job := self._jobs.requeue_stale(idle_for=self._stale_after)) is not None:
            if job.get("attempts", 0) >= self._max_attempts:
                reason = STALLED.format(attempts=job["attempts"])
                if self._jobs.fail(job["_id"], error=reason):
                    metrics.JOBS_FINISHED.labels("failed").inc()
                    self._publisher.publish(
                        self._mp3_queue,
                        result_message(self._jobs.get(job["_id"]) or job),
                        message_id=job["_id"],
                    )
                    report.failed += 1
                continue
            log.warning("job %s stalled in processing; putting it back on the queue", job["_id"])
            self._publisher.publish(
                self._video_queue,
                video_message(job),
                message_id=job["_id"],
            )
            report.requeued += 1
        for job in self._jobs.abandoned_before(utcnow() - self._abandoned_after):
            if self._remove_abandoned(job):
                report.abandoned += 1
        if self._retention is not None:
            for job in self._jobs.finished_before(utcnow() - self._retention):
                self._expire(job)
                report.expired += 1
        return report

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
            if report.requeued or report.failed or report.expired:
                log.info("housekeeping: %s", report)
