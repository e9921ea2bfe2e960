"""Retrying what a dependency outage interrupts: jittered backoff, bounded by a deadline."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from common.errors import TransientError

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
