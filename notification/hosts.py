"""Per-host fairness for webhook calls: one bad receiver delays only its own deliveries.

Each call holds a worker for up to the webhook deadline. Without a bound per
host, a receiver that drips its answer (or hangs until the deadline) would hold
every worker and delay everyone's webhooks. ``HostGate`` lets at most
``concurrency`` calls reach one host at a time, and after a host fails it backs
off that host (exponentially, capped) so that its deliveries wait in the broker
instead of in a worker. The state is per process, which is enough: each replica
protects its own workers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from common.errors import RetryLater, TransientError

log = logging.getLogger(__name__)

# A busy host's delivery is deferred this long (rounded up to a step of the queue's ladder).
BUSY_DEFERRAL_SECONDS = 1.0


@dataclass
class _Host:
    in_flight: int = 0
    failures: int = 0
    closed_until: float = 0.0


class HostGate:
    """Admit webhook calls per receiving host: a concurrency cap and back-off after failures."""

    def __init__(
        self,
        *,
        concurrency: int = 2,
        backoff_base: float = 5.0,
        backoff_cap: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._concurrency = concurrency
        self._base = backoff_base
        self._cap = backoff_cap
        self._clock = clock
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}

    @contextlib.contextmanager
    def calling(self, host: str) -> Iterator[None]:
        """Hold one of ``host``'s call slots while the block runs, and learn from its outcome.

        A ``TransientError`` escaping the block counts as the host failing; anything
        else (an answer, even a refusal) as the host answering.

        Raises:
            RetryLater: the host already has ``concurrency`` calls in flight.
            TransientError: the host is backing off after failing.
        """
        key = host.lower()
        with self._lock:
            state = self._hosts.setdefault(key, _Host())
            wait = state.closed_until - self._clock()
            if wait > 0:
                raise TransientError(
                    f"{host} failed {state.failures} time(s) in a row; not calling it "
                    f"for another {wait:.0f} s"
                )
            if state.in_flight >= self._concurrency:
                raise RetryLater(
                    f"{host} already has {state.in_flight} calls in flight",
                    delay=BUSY_DEFERRAL_SECONDS,
                )
            state.in_flight += 1
        outcome: bool | None = True  # True: it answered, False: it failed, None: not called
        try:
            yield
        except RetryLater:
            outcome = None  # deferred before calling (another worker holds the claim)
            raise
        except TransientError:
            outcome = False
            raise
        finally:
            self._settle(key, outcome)

    def _settle(self, key: str, answered: bool | None) -> None:
        with self._lock:
            state = self._hosts[key]
            state.in_flight -= 1
            if answered:
                state.failures, state.closed_until = 0, 0.0
            elif answered is False:
                state.failures += 1
                pause = min(self._cap, self._base * 2 ** (state.failures - 1))
                state.closed_until = self._clock() + pause
                log.warning(
                    "webhook host %s failed %d time(s) in a row; backing off for %.0f s",
                    key,
                    state.failures,
                    pause,
                )
            if state.in_flight == 0 and state.failures == 0:
                del self._hosts[key]  # nothing to remember: the map stays small
