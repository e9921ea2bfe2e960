"""converter.fetch against a real HTTP origin on 127.0.0.1: what arrives, and how each
failure is classified (permanent: the job fails with the reason; transient: retried)."""

from __future__ import annotations

import io
import re
import time

import pytest
from bson import ObjectId

from common.config import EgressConfig
from common.egress import EgressGuard
from common.errors import PermanentError, TransientError
from converter.fetch import (
    HEARTBEAT_S,
    IDLE_TIMEOUT_S,
    MIN_RATE_BYTES_PER_S,
    MIN_RATE_GRACE_S,
    FetchFailed,
    FetchLimits,
    fetch,
    fetch_source,
)
from tests.common.test_egress import PUBLIC_ADDRESS, answers, connections  # noqa: F401
from tests.support.media import make_video
from tests.support.origin import HUGE_BYTES, MediaOrigin

# EGRESS_ALLOW_PRIVATE=true with EGRESS_PORTS=any: how development and the tests let the
# guard reach an origin on this machine.
LOOPBACK_ALLOWED = EgressConfig(allow_private=True, ports=None)
SHIPPED = EgressConfig()
LIMIT = 8 * 1024**2


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_video(tmp_path_factory.mktemp("origin") / "clip.mp4", seconds=2).read_bytes()


@pytest.fixture
def origin(video: bytes):
    with MediaOrigin({"clip.mp4": video, "page.html": b"<!doctype html><p>not a video"}) as server:
        yield server


def fetched(url: str, *, policy=LOOPBACK_ALLOWED, resolver=None, **limits) -> bytes:
    """Fetch ``url`` and return what was handed on to be stored."""
    out = io.BytesIO()
    guard = EgressGuard(policy, **({"resolver": resolver} if resolver else {}))
    fetch(url, out.write, guard=guard, limits=FetchLimits(**{"max_bytes": LIMIT, **limits}))
    return out.getvalue()


@pytest.mark.parametrize("path", ["clip.mp4", "chunked/clip.mp4"])
def test_a_video_arrives_whole(origin, video, path):
    assert fetched(origin.url(path)) == video


def test_a_redirect_is_followed(origin, video):
    assert fetched(origin.url(f"redirect?to={origin.url('clip.mp4')}")) == video
    assert origin.requests["/clip.mp4"] == 1


def test_redirects_beyond_the_limit_fail(origin):
    url = origin.url(f"redirect?to={origin.url('clip.mp4')}")
    with pytest.raises(FetchFailed, match="answered 302"):
        fetched(url, redirects=0)


def test_a_missing_file_fails_the_job(origin):
    with pytest.raises(FetchFailed, match="answered 404"):
        fetched(origin.url("nothing.mp4"))


def test_a_503_is_transient_and_the_next_attempt_succeeds(origin, video):
    with pytest.raises(TransientError, match="answered 503") as caught:
        fetched(origin.url("flaky/clip.mp4"))
    assert not isinstance(caught.value, PermanentError)
    assert fetched(origin.url("flaky/clip.mp4")) == video


def test_what_is_not_media_fails_with_the_sniffs_reason(origin):
    with pytest.raises(FetchFailed, match="does not look like an audio or video file"):
        fetched(origin.url("page.html"))


def test_an_announced_size_over_the_limit_fails_before_anything_is_stored(origin):
    out = io.BytesIO()
    with pytest.raises(FetchFailed, match=f"announces {HUGE_BYTES} bytes"):
        fetch(
            origin.url("huge"),
            out.write,
            guard=EgressGuard(LOOPBACK_ALLOWED),
            limits=FetchLimits(max_bytes=LIMIT),
        )
    assert out.getvalue() == b""


def test_a_body_that_outgrows_the_limit_is_cut_off_at_the_limit(origin):
    out = io.BytesIO()
    with pytest.raises(FetchFailed, match="is larger than the 1048576-byte limit"):
        fetch(
            origin.url("endless"),
            out.write,
            guard=EgressGuard(LOOPBACK_ALLOWED),
            limits=FetchLimits(max_bytes=1024**2),
        )
    assert 0 < len(out.getvalue()) <= 1024**2


def test_an_origin_below_the_minimum_rate_is_cut_off(origin):
    # The shipped minimum rate (64 KiB/s); the grace period scaled from 30 s to 1 s.
    # The origin sends 4 KiB every 0.5 s: 8 KiB/s.
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="too slow"):
        fetched(origin.url("slow/clip.mp4"), grace=MIN_RATE_GRACE_S / 30)
    assert time.monotonic() - started < 5
    assert MIN_RATE_BYTES_PER_S == 64 * 1024


def test_a_long_fetch_says_it_is_alive(origin, video):
    # The shipped heartbeat is every 30 s (HEARTBEAT_S); scaled to 0.4 s for an origin that
    # takes about 2 s (17 pieces of 4 KiB, one every 0.1 s).
    origin.drip_seconds = 0.1
    beats = []
    out = io.BytesIO()
    fetch(
        origin.url("slow/clip.mp4"),
        out.write,
        guard=EgressGuard(LOOPBACK_ALLOWED),
        limits=FetchLimits(max_bytes=LIMIT, min_rate=0, heartbeat_every=HEARTBEAT_S / 75),
        heartbeat=lambda: beats.append(time.monotonic()),
    )
    assert out.getvalue() == video
    assert len(beats) >= 2


def test_an_origin_that_goes_silent_is_a_transient_timeout(origin):
    # The shipped idle timeout is 60 s (IDLE_TIMEOUT_S), scaled to 0.5 s; the origin sends
    # its first 4 KiB and then waits 3 s.
    origin.drip_seconds = 3.0
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"sent nothing for 0\.5 s") as caught:
        fetched(origin.url("slow/clip.mp4"), idle_timeout=IDLE_TIMEOUT_S / 120, min_rate=0)
    assert not isinstance(caught.value, PermanentError)
    assert time.monotonic() - started < 2


def test_the_total_time_limit_is_transient(origin):
    started = time.monotonic()
    with pytest.raises(TransientError, match="within 1 s") as caught:
        fetched(origin.url("slow/clip.mp4"), timeout=1.0, min_rate=0)
    assert not isinstance(caught.value, PermanentError)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("url", "resolved", "reason"),
    [
        ("http://127.0.0.1/clip.mp4", None, "127.0.0.1 is loopback"),
        ("http://localhost/clip.mp4", None, "localhost is loopback"),
        ("http://media.example/clip.mp4", "127.0.0.1", "resolves to 127.0.0.1, which is loopback"),
        ("http://media.example/clip.mp4", "10.1.2.3", "resolves to 10.1.2.3, which is private"),
    ],
)
def test_the_shipped_guard_refuses_private_addresses(url, resolved, reason, connections):  # noqa: F811
    resolver = answers(resolved) if resolved else None
    with pytest.raises(FetchFailed, match=re.escape(reason)):
        fetched(url, policy=SHIPPED, resolver=resolver)
    assert connections.attempts == []


def test_a_redirect_to_a_refused_address_fails_without_connecting(origin, connections):  # noqa: F811
    connections.routes[PUBLIC_ADDRESS] = origin.port
    metadata = "http://169.254.169.254/latest/meta-data/"
    with pytest.raises(FetchFailed, match=re.escape("169.254.169.254 is link-local")):
        fetched(
            f"http://media.example/redirect?to={metadata}",
            policy=SHIPPED,
            resolver=answers(PUBLIC_ADDRESS),
        )
    assert connections.attempts == [PUBLIC_ADDRESS]
    assert origin.requests["/redirect"] == 1


def test_a_name_that_does_not_resolve_fails_the_job():
    with pytest.raises(FetchFailed, match="does not resolve"):
        fetched("http://nowhere.invalid/clip.mp4", policy=SHIPPED)


def test_fetch_source_stores_the_video_under_the_jobs_id_once(origin, video, storage, tmp_path):
    job = {
        "_id": "job-import",
        "owner": "someone@example.com",
        "filename": "clip.mp4",
        "video_fid": ObjectId(),
        "source_url": origin.url("clip.mp4"),
        "source_max_bytes": LIMIT,
    }
    guard = EgressGuard(LOOPBACK_ALLOWED)
    for _ in range(2):  # the second attempt (a retry after a later failure) reads storage
        destination = io.BytesIO()
        assert fetch_source(job, destination, videos=storage.videos, guard=guard) == len(video)
        assert destination.getvalue() == video
    assert origin.requests["/clip.mp4"] == 1
    stored = storage.videos.find_one({"_id": job["video_fid"]})
    assert stored["length"] == len(video)
    assert stored["metadata"]["owner"] == job["owner"]


def test_fetch_source_leaves_nothing_stored_when_the_fetch_fails(origin, storage):
    job = {
        "_id": "job-too-big",
        "owner": "someone@example.com",
        "filename": "endless",
        "video_fid": ObjectId(),
        "source_url": origin.url("endless"),
        "source_max_bytes": 1024**2,
    }
    with pytest.raises(FetchFailed):
        fetch_source(job, io.BytesIO(), videos=storage.videos, guard=EgressGuard(LOOPBACK_ALLOWED))
    assert storage.videos.find_one({"_id": job["video_fid"]}) is None
    assert storage.videos.chunks.count_documents({"files_id": job["video_fid"]}) == 0
