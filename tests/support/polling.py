"""Wait for something that happens on another thread or process."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    predicate: Callable[[], object], timeout: float = 15.0, interval: float = 0.05
) -> None:
    """Poll ``predicate`` until it is truthy.

    Raises:
        AssertionError: it stayed falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    if not predicate():
        raise AssertionError(f"condition not met within {timeout}s")
