"""HostGate: per-host concurrency and back-off for webhook calls (a pure unit, fake clock)."""

from __future__ import annotations

import pytest

from common.errors import PermanentError, RetryLater, TransientError
from notification.hosts import BUSY_DEFERRAL_SECONDS, HostGate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(gate: HostGate, host: str) -> None:
    with pytest.raises(TransientError), gate.calling(host):
        raise TransientError("503 from the receiver")


def test_calls_beyond_the_hosts_concurrency_are_deferred_not_failed():
    gate = HostGate(concurrency=2)
    with gate.calling("hooks.example"), gate.calling("HOOKS.example"):
        with pytest.raises(RetryLater) as deferred, gate.calling("hooks.example"):
            pass
        assert deferred.value.delay == BUSY_DEFERRAL_SECONDS  # a deferral, not a failure
        with gate.calling("other.example"):  # other hosts are not held back
            pass
    with gate.calling("hooks.example"):  # the slots are free again
        pass


def test_a_failing_host_backs_off_exponentially_up_to_the_cap():
    clock = Clock()
    gate = HostGate(backoff_base=5.0, backoff_cap=30.0, clock=clock)
    pauses = []
    for _ in range(5):
        fail(gate, "down.example")
        started = clock.now
        with pytest.raises(TransientError, match="not calling it"), gate.calling("down.example"):
            pass
        while True:  # find when the host is let through again
            clock.now += 1.0
            try:
                with gate.calling("probe.example"):
                    pass
                gate_open = True
                with gate.calling("down.example"):
                    raise TransientError("still down")
            except TransientError as exc:
                if "not calling it" in str(exc):
                    continue
                pauses.append(clock.now - started)
                break
            assert gate_open
    assert pauses == [5.0, 10.0, 20.0, 30.0, 30.0]


def test_an_answer_even_a_refusal_resets_the_back_off():
    clock = Clock()
    gate = HostGate(backoff_base=5.0, clock=clock)
    fail(gate, "flaky.example")
    clock.now += 5.0
    with pytest.raises(PermanentError), gate.calling("flaky.example"):
        raise PermanentError("410 Gone")
    fail(gate, "flaky.example")  # the count started again: a 5 s pause, not 10 s
    clock.now += 5.0
    with gate.calling("flaky.example"):
        pass


def test_a_deferral_inside_the_call_neither_fails_nor_resets_the_host():
    clock = Clock()
    gate = HostGate(backoff_base=5.0, clock=clock)
    fail(gate, "h.example")
    clock.now += 5.0
    with pytest.raises(RetryLater), gate.calling("h.example"):
        raise RetryLater("another worker holds the claim", delay=120)
    fail(gate, "h.example")
    clock.now += 5.0  # the second failure in a row pauses 10 s
    with pytest.raises(TransientError, match="2 time"), gate.calling("h.example"):
        pass


def test_hosts_in_good_standing_are_forgotten():
    gate = HostGate()
    for n in range(1000):
        with gate.calling(f"h{n}.example"):
            pass
    assert gate._hosts == {}
