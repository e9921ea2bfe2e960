"""Retrying transient failures: bounded backoff, results passed through, deadlines kept."""

from __future__ import annotations

import time

import pytest

from common.errors import PermanentError, TransientError
from common.retry import backoff_delay, retry_transient


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_delay_grows_within_jitter_and_cap(attempt):
    ceiling = min(10.0, 0.5 * 2 ** (attempt - 1))
    delays = [backoff_delay(attempt, base=0.5, cap=10.0) for _ in range(50)]
    assert all(ceiling * 0.5 <= d <= ceiling for d in delays)


def test_retry_returns_the_result_once_the_dependency_is_back():
    calls = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise TransientError("MongoDB unavailable")
        return "stored"

    assert retry_transient(flaky, "MongoDB", timeout=5, base=0.01, cap=0.02) == "stored"
    assert len(calls) == 3


def test_retry_gives_up_at_the_deadline_with_the_last_error():
    calls = []

    def down() -> None:
        calls.append(1)
        raise TransientError(f"still down ({len(calls)})")

    started = time.monotonic()
    with pytest.raises(TransientError, match=r"still down \(\d+\)"):
        retry_transient(down, "MongoDB", timeout=0.3, base=0.05, cap=0.05)
    elapsed = time.monotonic() - started
    assert elapsed < 0.3  # never sleeps past the deadline
    assert len(calls) >= 3


def test_permanent_errors_are_not_retried():
    calls = []

    def bad() -> None:
        calls.append(1)
        raise PermanentError("not a video")

    with pytest.raises(PermanentError):
        retry_transient(bad, "MongoDB", timeout=5, base=0.01)
    assert calls == [1]
