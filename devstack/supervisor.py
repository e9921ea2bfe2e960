"""Keep ``make run``'s services running: a service that dies is started again.

This is what compose's ``restart: unless-stopped`` and Kubernetes do for the
deployed system. A service that exits without being asked to (a crash, the OOM
killer's SIGKILL, a clean exit too) is logged with its exit status and counted,
and started again after a delay that doubles from 1 s up to 30 s; the delay
starts over from 1 s once the service has stayed up for 60 s. A service that
dies 5 times within 5 minutes is crash-looping (Kubernetes' CrashLoopBackOff):
each of its deaths is then logged as an error that names the service, its last
exit status and its log file, and it is still restarted, at the longest delay;
the other services keep running throughout.

Only ``make run`` supervises. The tests and the benchmarks drive ``Stack``
directly, and the fault suite kills and restarts services itself.
"""

from __future__ import annotations

import collections
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from devstack.stack import Stack, healthy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """When to start a dead service again, and when to call it crash-looping."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 60.0  # up this long, and its next death starts the delays over
    loop_deaths: int = 5
    loop_window: float = 300.0


class RestartHistory:
    """One service's deaths: how long to wait before the next start, whether it loops."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.deaths = 0
        self.recent_deaths = 0  # within policy.loop_window, as of the last death
        self.crash_looping = False
        self._streak = 0  # deaths since it last stayed up for policy.stable_after
        self._recent: collections.deque[float] = collections.deque()

    def died(self, started_at: float, now: float) -> float:
        """Record a death at ``now`` of a run begun at ``started_at``; return the restart delay."""
        policy = self.policy
        if now - started_at >= policy.stable_after:
            self._streak = 0
        self._streak += 1
        self.deaths += 1
        self._recent.append(now)
        while self._recent[0] <= now - policy.loop_window:
            self._recent.popleft()
        self.recent_deaths = len(self._recent)
        self.crash_looping = self.recent_deaths >= policy.loop_deaths
        doublings = min(self._streak - 1, 30)  # 2**30 s is beyond any cap
        return min(policy.first_delay * 2**doublings, policy.max_delay)


def describe_exit(returncode: int) -> str:
    """Say how a process ended, from its ``Popen.returncode``."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


class Supervisor:
    """Restart the services of a started ``Stack`` as they die; call ``check()`` often."""

    def __init__(
        self,
        stack: Stack,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stack = stack
        self.policy = policy or RestartPolicy()
        self.clock = clock
        now = clock()
        running = [name for name in stack.specs if name in stack.processes]
        self.history = {name: RestartHistory(self.policy) for name in running}
        self.started_at = dict.fromkeys(running, now)
        self.due: dict[str, float] = {}  # dead services and when their back-off ends
        self.recovering: set[str] = set()  # restarted, not yet answering on their health URL

    def check(self) -> None:
        """Notice the services that died, start those whose back-off is over, log recoveries."""
        now = self.clock()
        for name, returncode in self.stack.reap().items():
            self._died(name, describe_exit(returncode), now)
        for name, when in list(self.due.items()):
            if when <= now:
                del self.due[name]
                self._start(name, now)
        for name in list(self.recovering):
            if name in self.stack.processes and healthy(
                self.stack.specs[name].health_url, timeout=0.5
            ):
                self.recovering.discard(name)
                log.info("%s is up again (restart #%d)", name, self.history[name].deaths)

    def restarts(self) -> dict[str, int]:
        """Return how many times each service has died and been (or is to be) restarted."""
        return {name: history.deaths for name, history in self.history.items()}

    def log_summary(self) -> None:
        """Log how often each service was restarted, if any was."""
        counts = [f"{name} {deaths}" for name, deaths in self.restarts().items() if deaths]
        if counts:
            log.info("restarts during this run: %s", ", ".join(counts))

    def _died(self, name: str, status: str, now: float) -> None:
        history = self.history[name]
        delay = history.died(self.started_at[name], now)
        self.due[name] = now + delay
        self.recovering.discard(name)
        where = self.stack.log_path(name)
        if history.crash_looping:
            log.error(
                "CRASH LOOP: %s has died %d times in %.0fs (last: %s); "
                "still restarting it, next in %.0fs; its output is in %s",
                name,
                history.recent_deaths,
                self.policy.loop_window,
                status,
                delay,
                where,
            )
        else:
            log.warning(
                "%s %s; restart #%d in %.0fs (output in %s)",
                name,
                status,
                history.deaths,
                delay,
                where,
            )

    def _start(self, name: str, now: float) -> None:
        self.started_at[name] = now
        try:
            self.stack.spawn(name)
        except OSError as exc:  # the program could not even be run: a death like any other
            self._died(name, f"could not be started ({exc})", now)
            return
        self.recovering.add(name)
