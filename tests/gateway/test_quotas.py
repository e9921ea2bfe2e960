"""The quota policy on its own: which usage refuses an upload, with what answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.http.errors import ApiError
from gateway.config import Config
from gateway.quotas import ACTIVE_JOBS_RETRY_AFTER_S, UNLIMITED, Quotas, Usage, check_upload

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
GiB = 1024**3
QUOTAS = Quotas()  # the shipped defaults


def usage(stored=0, active=0, recent=0, oldest_seconds_ago=None) -> Usage:
    oldest = None if oldest_seconds_ago is None else NOW - timedelta(seconds=oldest_seconds_ago)
    return Usage(stored, active, recent, oldest)


def test_the_defaults_are_10_gib_10_jobs_and_20_uploads_a_minute():
    assert (QUOTAS.stored_bytes, QUOTAS.active_jobs, QUOTAS.uploads_per_minute) == (
        10 * GiB,
        10,
        20,
    )


def test_room_left_is_returned_under_every_quota():
    left = check_upload(
        usage(stored=3 * GiB, active=9, recent=19, oldest_seconds_ago=5),
        QUOTAS,
        incoming_bytes=GiB,
        now=NOW,
    )
    assert left == 7 * GiB


REFUSALS = {
    "twentieth-upload-this-minute": (
        usage(recent=20, oldest_seconds_ago=42),
        None,
        429,
        "upload_rate_exceeded",
        "18",
    ),
    "the-oldest-leaves-the-window-now": (
        usage(recent=25, oldest_seconds_ago=60),
        None,
        429,
        "upload_rate_exceeded",
        "1",
    ),
    "ten-jobs-queued-or-running": (
        usage(active=10),
        None,
        429,
        "too_many_active_jobs",
        str(ACTIVE_JOBS_RETRY_AFTER_S),
    ),
    "storage-full": (usage(stored=10 * GiB), None, 507, "storage_quota_exceeded", None),
    "this-upload-does-not-fit": (
        usage(stored=10 * GiB - 100),
        101,
        507,
        "storage_quota_exceeded",
        None,
    ),
}


@pytest.mark.parametrize(
    ("state", "incoming", "status", "code", "retry_after"),
    REFUSALS.values(),
    ids=REFUSALS.keys(),
)
def test_an_upload_past_a_quota_is_refused_saying_which(state, incoming, status, code, retry_after):
    with pytest.raises(ApiError) as refused:
        check_upload(state, QUOTAS, incoming_bytes=incoming, now=NOW)
    assert refused.value.status == status
    assert refused.value.code == code
    assert refused.value.headers.get("Retry-After") == retry_after
    assert refused.value.extra["quota"] in ("stored_bytes", "active_jobs", "uploads_per_minute")
    assert refused.value.message


def test_an_upload_that_just_fits_is_let_through_with_its_room_as_the_bound():
    state = usage(stored=10 * GiB - 100)
    assert check_upload(state, QUOTAS, incoming_bytes=100, now=NOW) == 100
    # Without a Content-Length the room left bounds the upload as it streams.
    assert check_upload(state, QUOTAS, incoming_bytes=None, now=NOW) == 100


def test_unlimited_quotas_refuse_nothing():
    huge = usage(stored=10**15, active=10**6, recent=10**6, oldest_seconds_ago=1)
    assert check_upload(huge, UNLIMITED, incoming_bytes=10**12, now=NOW) is None


def test_quotas_are_read_from_the_environment_with_0_for_unlimited():
    config = Config.from_env(
        {"QUOTA_STORAGE_BYTES": "500MiB", "QUOTA_ACTIVE_JOBS": "0", "QUOTA_UPLOADS_PER_MINUTE": "3"}
    )
    assert config.quotas == Quotas(
        stored_bytes=500 * 1024**2, active_jobs=None, uploads_per_minute=3
    )
    assert Config.from_env({}).quotas == QUOTAS
