"""Retrying what a dependency outage interrupts.

Two shapes: ``retry_transient`` waits in-process with jittered backoff for a
call that must not be given up lightly (a few seconds to a minute), and
``RetryLadder`` is the schedule of a queue's redeliveries, which wait in the
broker (``common.messaging``) for up to a day without holding a worker.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from common.config import Env
from common.errors import ConfigError, TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Return a jittered exponential delay for the given 1-based attempt, at most ``cap``."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography  # nosec B311


def retry_transient(
    action: Callable[[], T], what: str, *, timeout: float, base: float = 0.5, cap: float = 5.0
) -> T:
    """Run ``action`` until it stops raising TransientError, for at most ``timeout`` seconds.

    Raises:
        TransientError: ``what`` was still unavailable when the time ran out.
    """
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except TransientError as exc:
            delay = backoff_delay(attempt, base=base, cap=cap)
            if time.monotonic() + delay >= deadline:
                raise
            log.warning("waiting for %s (%s); retrying in %.1fs", what, exc, delay)
            time.sleep(delay)


@dataclass(frozen=True, slots=True)
class RetryLadder:
    """When a message that failed is tried again: a ladder of delays, climbed one step
    per failed attempt (the last step repeats), until the retries span ``horizon``.

    The number of attempts follows from the two, so scaling a ladder (for a test)
    shortens every wait and keeps the number of attempts.
    """

    delays: tuple[float, ...]
    horizon: float

    def __post_init__(self) -> None:
        if not self.delays or min(self.delays) <= 0:
            raise ValueError("a retry ladder needs at least one positive delay")
        if self.horizon < 0:
            raise ValueError("a retry ladder's horizon cannot be negative")

    def delay_after(self, attempt: int) -> float:
        """Return how long to wait after the 1-based ``attempt`` failed."""
        return self.delays[min(max(attempt, 1), len(self.delays)) - 1]

    @property
    def attempts(self) -> int:
        """Return how many attempts there are in all: enough for the retries to span the
        horizon (the last one starts at least ``horizon`` after the first)."""
        # In whole milliseconds (the broker's unit), so a scaled ladder counts the same.
        horizon, delays = _ms(self.horizon), [_ms(delay) for delay in self.delays]
        elapsed, attempt = 0, 1
        for delay in delays:
            if elapsed >= horizon:
                return attempt
            elapsed += delay
            attempt += 1
        return attempt + max(0, -(-(horizon - elapsed) // delays[-1]))

    @property
    def span(self) -> float:
        """Return the seconds from the first attempt to the last."""
        return sum(self.delay_after(attempt) for attempt in range(1, self.attempts))

    def step_at_least(self, delay: float) -> float:
        """Return the shortest step of the ladder not shorter than ``delay`` (else the longest).

        Waits outside the ladder (a deferral) use its steps, so a queue has a fixed set
        of delay queues however its messages wait.
        """
        return min((step for step in self.delays if step >= delay), default=max(self.delays))

    def scaled(self, factor: float) -> RetryLadder:
        """Return this ladder with every delay and the horizon multiplied by ``factor``."""
        return RetryLadder(tuple(delay * factor for delay in self.delays), self.horizon * factor)

    @classmethod
    def from_env(cls, env: Env, prefix: str, default: RetryLadder) -> RetryLadder:
        """Read ``<prefix>_RETRY_DELAYS`` (seconds, comma-separated) and
        ``<prefix>_RETRY_HORIZON_SECONDS`` over ``default``."""
        name = f"{prefix}_RETRY_DELAYS"
        raw = env.optional(name)
        delays = default.delays
        if raw is not None:
            try:
                delays = tuple(float(part) for part in raw.split(","))
            except ValueError:
                raise ConfigError(
                    f"{name} must be seconds separated by commas, got {raw!r}"
                ) from None
            if min(delays) < 0.001:
                raise ConfigError(f"{name} must be at least a millisecond each, got {raw!r}")
        horizon = env.float(f"{prefix}_RETRY_HORIZON_SECONDS", default.horizon, minimum=0.0)
        return cls(delays, horizon)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000)) if seconds > 0 else 0
