"""Accept a video into the pipeline: the one path every way a video arrives goes through.

A transport (the multipart ``POST /upload``; resumable uploads at ``/files/``,
``gateway.tus``; imports by URL, ``gateway.imports``) reads what the client asked for with
``read_submission`` before it stores a byte, asks ``Intake.room_for`` how much the
caller may still store, writes the bytes into storage (``Intake.new_video``, or
chunk by chunk across requests in ``gateway.resumable``), and hands the stored
video to ``Intake.accept``. That records the job, publishes it to the converters and
marks it enqueued, the moment it counts as accepted; if the job cannot be
queued, what was stored is removed and the caller gets a 503.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId

from common.config import EgressConfig
from common.egress import EgressRefused, check_url
from common.errors import TransientError
from common.http.errors import ApiError
from common.jobs import JobStore
from common.messages import video_message
from common.messaging import Publisher
from common.options import InvalidOption, Options
from common.retry import retry_transient
from common.storage import Storage, Upload
from common.tokens import Claims
from gateway import quotas

log = logging.getLogger(__name__)

CALLBACK_FIELD = "callback_url"
# Set by a client that sends a copy of a video's sound from this many seconds into it: the
# trim it sends is in the copy's times, and the job shows it in the video's (common.jobs).
CLIP_START_FIELD = "clip_start"
MAX_CLIP_START_S = 7 * 24 * 3600.0
# How long an upload that met a store outage waits for the store to settle what it did:
# remove the pieces of a refused upload, or record an accepted one.
SETTLE_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class Submission:
    """What the client asked for with its video: output options and an optional webhook."""

    options: dict[str, Any]
    callback_url: str | None
    clip_start: float | None = None


def read_submission(fields: Mapping[str, str], egress: EgressConfig) -> Submission:
    """Validate a submission's text fields: output options and an optional callback URL.

    Raises:
        ApiError: 400 ``invalid_option`` naming the field, or ``invalid_callback_url``.
    """
    not_options = (CALLBACK_FIELD, CLIP_START_FIELD)
    options = {name: value for name, value in fields.items() if name not in not_options}
    try:
        parsed = Options.from_dict(options)
    except InvalidOption as exc:
        raise ApiError(400, "invalid_option", str(exc), extra={"field": exc.field}) from None
    clip_start = _clip_start(fields.get(CLIP_START_FIELD))
    callback_url = fields.get(CALLBACK_FIELD) or None
    if callback_url:
        # Whether the host resolves, and to what, is checked when the callback is made:
        # an answer now would prove nothing then.
        try:
            check_url(callback_url, egress)
        except EgressRefused as exc:
            raise ApiError(
                400, "invalid_callback_url", f"callback_url: {exc}", extra={"field": CALLBACK_FIELD}
            ) from None
    return Submission(options=parsed.to_dict(), callback_url=callback_url, clip_start=clip_start)


def _clip_start(text: str | None) -> float | None:
    """Read ``clip_start``: seconds, at least 0, finite.

    Raises:
        ApiError: 400 ``invalid_option`` naming the field.
    """
    if text is None or not str(text).strip():
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0.0 <= seconds <= MAX_CLIP_START_S:
        raise ApiError(
            400,
            "invalid_option",
            f"clip_start: must be seconds from 0 to {MAX_CLIP_START_S:g}, got {text!r}",
            extra={"field": CLIP_START_FIELD},
        )
    return seconds or None


@dataclass(frozen=True, slots=True)
class Room:
    """What a caller may still do: their usage and quotas (None for an admin) and the bytes
    they may still store (None: only the size limit bounds them)."""

    usage: quotas.Usage | None
    bytes_left: int | None
    limits: quotas.Quotas | None = None

    def storage_exceeded(self) -> ApiError:
        """Return the 507 for a video that outgrew what its owner (not an admin) may store."""
        return quotas.storage_exceeded(self.limits, self.usage)


@dataclass(frozen=True, slots=True)
class StoredVideo:
    """A video whose bytes are in storage, waiting to become a job."""

    video_fid: ObjectId
    filename: str
    size: int | None  # None for a video imported by URL until the converter fetches it


@dataclass(frozen=True, slots=True)
class Source:
    """Where the converter fetches a video imported by URL, and the most it may store."""

    url: str
    max_bytes: int


class Intake:
    """Turn stored videos into accepted jobs, within their owners' quotas."""

    def __init__(
        self,
        *,
        storage: Storage,
        jobs: JobStore,
        publisher: Publisher,
        video_queue: str,
        quotas: quotas.Quotas,
        overrides: quotas.QuotaOverrides,
    ) -> None:
        self._storage = storage
        self._jobs = jobs
        self._publisher = publisher
        self._video_queue = video_queue
        self._quotas = quotas
        self.overrides = overrides

    def quotas_of(self, user: Claims) -> quotas.Quotas:
        """Return the caller's quotas: the defaults with any an admin set for them.

        Raises:
            TransientError: MongoDB failed.
        """
        if user.admin:
            return quotas.UNLIMITED
        return self._quotas.overridden(self.overrides.of(user.subject))

    def room_for(self, user: Claims, *, incoming_bytes: int | None, now: datetime) -> Room:
        """Check the caller's quotas before any byte is read; ``incoming_bytes`` is the
        video's size when the client announced it.

        Raises:
            ApiError: 429 or 507 when the upload would break a quota.
            TransientError: MongoDB failed.
        """
        if user.admin:
            return Room(usage=None, bytes_left=None)
        limits = self.quotas_of(user)
        usage = quotas.measure(self._storage, self._jobs, user.subject, now)
        left = quotas.check_upload(usage, limits, incoming_bytes=incoming_bytes, now=now)
        return Room(usage=usage, bytes_left=left, limits=limits)

    def new_video(self, *, job_id: str, owner: str, filename: str) -> Upload:
        """Start storing the video of job ``job_id``, piece by piece."""
        return self._storage.videos.open_upload(
            filename, {"owner": owner, "job_id": job_id}, abort_patience=SETTLE_TIMEOUT_S
        )

    def accept(
        self,
        *,
        job_id: str,
        owner: str,
        video: StoredVideo,
        submission: Submission,
        source: Source | None = None,
    ) -> dict[str, Any]:
        """Record the job, queue it for conversion and mark it enqueued; return the job.

        ``source``: the video is not stored yet; the converter fetches it from there.

        Raises:
            TransientError: MongoDB or the broker failed; what was stored is removed
                (or, after a longer outage, left to the janitor).
        """
        try:
            job = self._jobs.create(
                job_id=job_id,
                owner=owner,
                video_fid=video.video_fid,
                filename=video.filename,
                size=video.size,
                options=submission.options,
                callback_url=submission.callback_url,
                clip_start=submission.clip_start,
                source_url=source.url if source else None,
                source_max_bytes=source.max_bytes if source else None,
            )
            message = video_message(job)
            self._publisher.publish(self._video_queue, message.body, message_id=message.message_id)
        except TransientError:
            self._forget(job_id, video.video_fid)
            raise
        self._mark_enqueued(job_id)
        return job

    def _forget(self, job_id: str, video_fid: ObjectId) -> None:
        """Remove what an upload stored when it could not be queued.

        A write that failed may still have landed, so this waits out a short store outage;
        what is still there after ``SETTLE_TIMEOUT_S`` the janitor removes.
        """

        def remove() -> None:
            # The record last: the janitor finds leftovers by it.
            self._storage.delete_files_of({"video_fid": video_fid})
            self._jobs.delete(job_id)

        with contextlib.suppress(TransientError):
            retry_transient(remove, "MongoDB to remove a refused upload", timeout=SETTLE_TIMEOUT_S)

    def _mark_enqueued(self, job_id: str) -> None:
        """Record that the job's message is on the queue, which makes the upload accepted.

        Raises:
            TransientError: MongoDB stayed away for ``SETTLE_TIMEOUT_S``, or the janitor
                removed the job first; unless a converter started it meanwhile, the janitor
                removes it.
        """
        marked = retry_transient(
            lambda: self._jobs.mark_enqueued(job_id),
            "MongoDB to record an accepted upload",
            timeout=SETTLE_TIMEOUT_S,
        )
        if not marked:
            raise TransientError("the upload was removed before it was accepted")
