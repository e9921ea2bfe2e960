"""Retrying transient failures: bounded backoff, results passed through, deadlines kept."""

from __future__ import annotations

import time

import pytest

from common.config import Env
from common.errors import ConfigError, PermanentError, TransientError
from common.retry import RetryLadder, backoff_delay, retry_transient
from converter.config import CONVERT_RETRY
from converter.config import Config as ConverterConfig
from notification.config import NOTIFY_RETRY
from notification.config import Config as NotificationConfig


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


# -- the ladders the workers ship ---------------------------------------------------


def test_notifications_keep_trying_for_a_day():
    assert NOTIFY_RETRY.attempts == 31
    assert NOTIFY_RETRY.span >= 24 * 3600  # the last attempt starts a day after the first
    assert NOTIFY_RETRY.span - NOTIFY_RETRY.delays[-1] < 24 * 3600  # and not a step more
    assert max(NOTIFY_RETRY.delays) == 3600


def test_conversions_keep_trying_for_an_hour():
    assert CONVERT_RETRY.attempts == 18
    assert 3600 <= CONVERT_RETRY.span < 3600 + CONVERT_RETRY.delays[-1]


def test_the_workers_ship_those_ladders_and_read_overrides():
    assert ConverterConfig.from_env({}).retry == CONVERT_RETRY
    assert NotificationConfig.from_env({}).retry == NOTIFY_RETRY
    custom = NotificationConfig.from_env(
        {"NOTIFY_RETRY_DELAYS": "1, 2.5,60", "NOTIFY_RETRY_HORIZON_SECONDS": "7200"}
    ).retry
    assert custom == RetryLadder(delays=(1, 2.5, 60), horizon=7200)


@pytest.mark.parametrize("raw", ["", "ten", "1,,2", "0", "5,-1"])
def test_malformed_ladders_are_refused_naming_the_variable(raw):
    if raw == "":
        assert RetryLadder.from_env(Env({"X_RETRY_DELAYS": raw}), "X", NOTIFY_RETRY) == NOTIFY_RETRY
        return
    with pytest.raises(ConfigError, match="X_RETRY_DELAYS"):
        RetryLadder.from_env(Env({"X_RETRY_DELAYS": raw}), "X", NOTIFY_RETRY)


@pytest.mark.parametrize("factor", [0.001, 0.01, 0.05, 0.5])
def test_a_scaled_ladder_keeps_its_number_of_attempts(factor):
    for shipped in (NOTIFY_RETRY, CONVERT_RETRY):
        scaled = shipped.scaled(factor)
        assert scaled.attempts == shipped.attempts
        assert scaled.span == pytest.approx(shipped.span * factor)


def test_the_ladder_climbs_one_step_per_failure_then_repeats_its_last():
    ladder = RetryLadder(delays=(1, 5, 20), horizon=60)
    assert [ladder.delay_after(attempt) for attempt in range(1, 7)] == [1, 5, 20, 20, 20, 20]
    assert ladder.attempts == 6  # 1 + 5 + 20 + 20 = 46 < 60 <= 66
    assert RetryLadder(delays=(1,), horizon=0).attempts == 1


def test_a_deferral_waits_the_shortest_step_at_least_as_long():
    ladder = RetryLadder(delays=(10, 30, 300), horizon=900)
    assert ladder.step_at_least(1) == 10
    assert ladder.step_at_least(120) == 300
    assert ladder.step_at_least(5000) == 300  # the longest when none is long enough
