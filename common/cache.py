"""A small in-process cache: at most ``size`` entries, each good for ``ttl`` seconds.

Thread-safe; the least recently used entry goes first when it is full, so a caller
cycling through made-up keys evicts only the oldest.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

Value = TypeVar("Value")


class TtlCache(Generic[Value]):
    """Values by key, each forgotten ``ttl`` seconds after it was put."""

    def __init__(
        self, size: int, ttl: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._size = size
        self._ttl = ttl
        self._clock = clock
        self._entries: collections.OrderedDict[str, tuple[float, Value]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, Value | None]:
        """Return ``(True, value)`` while ``key``'s entry is fresh, else ``(False, None)``."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False, None
            if now >= entry[0]:
                del self._entries[key]
                return False, None
            self._entries.move_to_end(key)
            return True, entry[1]

    def put(self, key: str, value: Value) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds from now."""
        with self._lock:
            self._entries[key] = (self._clock() + self._ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __iter__(self) -> Iterator[str]:
        """Iterate over the keys held now, oldest use first."""
        with self._lock:
            return iter(list(self._entries))
