"""A system of its own for fault injection, so kills and outages disturb no other test.

Every dependency sits behind a TCP proxy (``system.proxies``), the services run
as separate processes (``system.stack`` kills and restarts them), and the janitor's
and the retry ladders' delays are scaled down so that recovery
happens within the test's bounds; every number of attempts and every limit is the
shipped one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.retry import RetryLadder
from converter.config import CONVERT_RETRY
from notification.config import NOTIFY_RETRY
from tests.support.system import System, User, new_user

# The retry ladders' waits, scaled: each ladder keeps its steps' proportions and its
# number of attempts (converter 18 over an hour, notification 31 over a day), so a wait
# of T seconds here stands for T / factor seconds with the shipped settings.
CONVERT_SCALE = 0.1  # 5 s ... 5 min steps become 0.5 s ... 30 s, the hour 6 minutes
NOTIFY_SCALE = 0.01  # 10 s ... 1 h steps become 0.1 s ... 36 s, the day 14.4 minutes
# The notification claim lease is the shipped one (CLAIM_LEASE_SECONDS, 120 s): a test that
# kills a worker holding a claim waits it out, as a production delivery would.
SCALED_CONVERT_RETRY = CONVERT_RETRY.scaled(CONVERT_SCALE)
SCALED_NOTIFY_RETRY = NOTIFY_RETRY.scaled(NOTIFY_SCALE)
assert SCALED_CONVERT_RETRY.attempts == CONVERT_RETRY.attempts
assert SCALED_NOTIFY_RETRY.attempts == NOTIFY_RETRY.attempts


def ladder_env(prefix: str, ladder: RetryLadder) -> dict[str, str]:
    """Return the variables that give a worker ``ladder``."""
    return {
        f"{prefix}_RETRY_DELAYS": ",".join(f"{delay:g}" for delay in ladder.delays),
        f"{prefix}_RETRY_HORIZON_SECONDS": f"{ladder.horizon:g}",
    }


# Delays scaled down so recovery fits the tests' time; every attempt limit and the
# broker's delivery limit (20) are the shipped ones.
FAST_RECOVERY = {
    **ladder_env("CONVERT", SCALED_CONVERT_RETRY),
    **ladder_env("NOTIFY", SCALED_NOTIFY_RETRY),
    # The janitor looks every second (shipped: 60 s) and calls a job stalled after 10 s
    # without progress (shipped: 1800 s).
    "JANITOR_INTERVAL_SECONDS": "1",
    "STALE_JOB_SECONDS": "10",
    # A job whose upload got a 503 and could not be cleaned up goes after 5 s (shipped: 600 s).
    "ABANDONED_UPLOAD_SECONDS": "5",
}


@pytest.fixture(scope="module")
def fault_system(start_system) -> Iterator[System]:
    """Start a system that the module's tests may break."""
    with start_system("faults", FAST_RECOVERY) as system:
        yield system


@pytest.fixture
def fault_user(fault_system) -> User:
    """A fresh user of the fault system, sending the load of many.

    An admin, because admins have no per-user quotas: the tests here send bursts of 30-60
    uploads, the whole system's load, which one ordinary user may not (tests/hostile/
    test_quotas.py) and which is not what they are about.
    """
    return new_user(fault_system, admin=True)
