"""A system of its own for fault injection, so kills and outages disturb no other test.

Every dependency sits behind a TCP proxy (``system.proxies``), the services run
as separate processes (``system.stack`` kills and restarts them), and the janitor's
and the claim lease's delays are shortened so that recovery happens within the
test's bounds; retries and attempt limits are the shipped ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.system import System, User, new_user

# Delays scaled down so recovery fits the tests' time; every attempt limit (converter 5,
# notification 8, the broker's delivery limit 20) and every retry schedule is the shipped one.
FAST_RECOVERY = {
    # The janitor looks every second (shipped: 60 s) and calls a job stalled after 10 s
    # without progress (shipped: 1800 s).
    "JANITOR_INTERVAL_SECONDS": "1",
    "STALE_JOB_SECONDS": "10",
    # A job whose upload got a 503 and could not be cleaned up goes after 5 s (shipped: 600 s).
    "ABANDONED_UPLOAD_SECONDS": "5",
    # A dead notification worker's claim lapses after 5 s (shipped: 120 s); a delivery that
    # finds it held waits the lease out without spending an attempt.
    "NOTIFY_CLAIM_LEASE_SECONDS": "5",
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
