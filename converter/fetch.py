"""Fetch the video of a job imported by URL: the converter's first step for such a job.

The fetch runs in the converter, not in the gateway: a download may take minutes,
and a gateway thread (and the client's request) would be held all that time, while
a converter already owns long work, a workdir, a retry ladder and a stall watch.
The gateway only vets the URL (``common.egress.check_url``) and queues the job.

Everything goes through the egress guard (``common.egress.EgressGuard.get``): the
host is resolved once and every address checked, the connection goes to those
addresses, each redirect is checked the same way, and one deadline bounds it all.
On top of that, the fetch refuses what an upload would be refused for, before it
stores more than the limit: a ``Content-Length`` or a body larger than the size
limit, and first bytes that are no audio or video container (the same sniff as an
upload's). It also cuts off an origin slower than a minimum rate.

What fails is classified where it arises, so the handler knows what to do:

- permanent, the job fails with the reason: a refused address (loopback, private,
  ...), a name that does not resolve, a 4xx or a 3xx beyond the redirects
  followed, too big, not media, below the minimum rate;
- transient, retried on the converter's ladder (``converter.config.CONVERT_RETRY``):
  a 5xx, 408, 425 or 429, a resolver that cannot answer now, a connection refused
  or cut, an origin that sends nothing for ``IDLE_TIMEOUT_S``, the total time limit
  reached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from common.egress import EgressGuard, EgressRefused, ReceiverRefused
from common.errors import PermanentError, TransientError
from common.sniff import SNIFF_BYTES, sniff_container
from common.storage import Bucket

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
# The whole fetch, connect to last byte. A 2 GiB video (MAX_CONTENT_LENGTH) needs an
# origin that averages 600 KB/s to arrive within it.
FETCH_TIMEOUT_S = 3600.0
# An origin that averages less than this, once the grace period is over, is cut off:
# a 100 MB video at this rate takes 26 minutes.
MIN_RATE_BYTES_PER_S = 64 * 1024
MIN_RATE_GRACE_S = 30.0
# Links to media often go through a redirect or two (a share link, a CDN).
MAX_REDIRECTS = 5
# An origin that sends nothing for this long has stalled (a timeout: retried).
IDLE_TIMEOUT_S = 60.0
# How often a fetch that is still receiving says so, which keeps the job from looking
# stalled to the janitor (STALE_JOB_SECONDS, 30 min, is shorter than FETCH_TIMEOUT_S).
HEARTBEAT_S = 30.0


class FetchFailed(PermanentError):
    """The source cannot be imported: the job fails with this reason."""


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """What a fetch may take: bytes (the size limit, or what the owner may still store)
    and time."""

    max_bytes: int
    timeout: float = FETCH_TIMEOUT_S
    min_rate: float = MIN_RATE_BYTES_PER_S
    grace: float = MIN_RATE_GRACE_S
    redirects: int = MAX_REDIRECTS
    heartbeat_every: float = HEARTBEAT_S
    idle_timeout: float = IDLE_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class Fetched:
    """What arrived: its size and the container family the sniff recognised."""

    size: int
    container: str


def fetch(
    url: str,
    write: Callable[[bytes], None],
    *,
    guard: EgressGuard,
    limits: FetchLimits,
    heartbeat: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
) -> Fetched:
    """Download ``url`` and hand its bytes to ``write``, which sees nothing unless they
    start like media and never more than ``limits.max_bytes``; call ``heartbeat`` every
    ``limits.heartbeat_every`` seconds while bytes arrive.

    Raises:
        FetchFailed: the source cannot be imported (see the module's docstring).
        TransientError: the origin failed for now; try again later.
    """
    try:
        return _fetch(url, write, guard, limits, heartbeat, clock)
    except (EgressRefused, ReceiverRefused) as exc:
        raise FetchFailed(f"the URL cannot be fetched: {exc}") from None
    except TransientError as exc:
        raise TransientError(f"the URL could not be fetched now: {exc}") from exc


def _fetch(
    url: str,
    write: Callable[[bytes], None],
    guard: EgressGuard,
    limits: FetchLimits,
    heartbeat: Callable[[], None],
    clock: Callable[[], float],
) -> Fetched:
    started = beat = clock()
    with guard.get(
        url, timeout=limits.timeout, redirects=limits.redirects, idle_timeout=limits.idle_timeout
    ) as body:
        announced = _content_length(body.answer.headers)
        if announced is not None and announced > limits.max_bytes:
            raise FetchFailed(_too_big(limits.max_bytes, f"announces {announced} bytes, more"))
        head = bytearray()
        container: str | None = None
        size = 0
        while chunk := body.read(READ_SIZE):
            size += len(chunk)
            if size > limits.max_bytes:
                raise FetchFailed(_too_big(limits.max_bytes, "is larger"))  # no or a false length
            now = clock()
            _check_rate(size, now - started, limits)
            if now - beat >= limits.heartbeat_every:
                heartbeat()
                beat = now
            if container is None:
                head += chunk
                if len(head) < SNIFF_BYTES:
                    continue
                container = _sniff(bytes(head))
                write(bytes(head))
            else:
                write(chunk)
        if container is None:
            if not head:
                raise FetchFailed("the URL's answer is empty")
            container = _sniff(bytes(head))
            write(bytes(head))
    log.info("fetched %d bytes (%s) in %.1f s", size, container, clock() - started)
    return Fetched(size=size, container=container)


def _content_length(headers: Mapping[str, str]) -> int | None:
    """Return the announced body size, or None when it is missing or unreadable."""
    raw = next((value for name, value in headers.items() if name.lower() == "content-length"), None)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _too_big(max_bytes: int, how: str) -> str:
    return f"the video at the URL {how} than the {max_bytes}-byte limit allows"


def _check_rate(size: int, elapsed: float, limits: FetchLimits) -> None:
    if elapsed > limits.grace and size / elapsed < limits.min_rate:
        raise FetchFailed(
            f"the URL's origin is too slow: {size / elapsed / 1024:.0f} KiB/s on average, "
            f"below the minimum {limits.min_rate / 1024:.0f} KiB/s"
        )


def _sniff(head: bytes) -> str:
    container = sniff_container(head)
    if container is None:
        raise FetchFailed("the file at the URL does not look like an audio or video file")
    return container


def fetch_source(
    job: Mapping[str, Any],
    destination: BinaryIO,
    *,
    videos: Bucket,
    guard: EgressGuard,
    heartbeat: Callable[[], None] = lambda: None,
) -> int:
    """Write the video of a job imported by URL to ``destination`` and return its size,
    fetching it the first time and storing it under the job's ``video_fid`` (counted as
    its owner's, like an upload); an attempt after a later failure reads it from storage.

    Raises:
        FetchFailed: the source cannot be imported.
        TransientError: the origin or the store failed for now; nothing is left stored.
    """
    video_fid = job["video_fid"]
    if videos.find_one({"_id": video_fid}) is not None:
        return videos.download_to(video_fid, destination)
    videos.delete_pieces(video_fid)  # what an attempt cut off mid-fetch left
    upload = videos.open_upload(
        job.get("filename") or "video",
        {"owner": job["owner"], "job_id": job["_id"], "source_url": job["source_url"]},
        file_id=video_fid,
    )

    def write(data: bytes) -> None:
        upload.write(data)
        destination.write(data)

    try:
        fetched = fetch(
            job["source_url"],
            write,
            guard=guard,
            limits=FetchLimits(max_bytes=job["source_max_bytes"]),
            heartbeat=heartbeat,
        )
        upload.finish()
    except BaseException:
        upload.abort()
        raise
    return fetched.size
