"""Wait for something that happens on another thread or process."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 15.0,
    interval: float = 0.05,
    *,
    describe: Callable[[], object] | None = None,
) -> None:
    """Poll ``predicate`` until it is truthy.

    Raises:
        AssertionError: it stayed falsy for ``timeout`` seconds; ``describe()`` says
            what was seen instead.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    if not predicate():
        seen = f": {describe()}" if describe is not None else ""
        raise AssertionError(f"condition not met within {timeout}s{seen}")
