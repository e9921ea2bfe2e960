"""make run's supervisor: the back-off and crash-loop rules, on a fake clock and real processes."""

from __future__ import annotations

import logging
import sys

import pytest

from devstack.stack import ServiceSpec, Stack
from devstack.supervisor import RestartHistory, RestartPolicy, Supervisor, describe_exit

POLICY = RestartPolicy()


def deaths_in_a_row(history: RestartHistory, count: int, up_for: float = 0.1) -> list[float]:
    """Let a service die ``count`` times, each run lasting ``up_for``; return the delays."""
    now, delays = 0.0, []
    for _ in range(count):
        delay = history.died(started_at=now, now=now + up_for)
        delays.append(delay)
        now += up_for + delay
    return delays


def test_the_delay_doubles_from_one_second_up_to_thirty():
    assert deaths_in_a_row(RestartHistory(POLICY), 8) == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_service_that_stayed_up_a_minute_starts_the_delays_over():
    history = RestartHistory(POLICY)
    deaths_in_a_row(history, 4)
    assert history.died(started_at=1000.0, now=1000.0 + POLICY.stable_after) == 1
    assert history.died(started_at=1061.0, now=1062.0) == 2
    assert history.deaths == 6


def test_five_deaths_within_five_minutes_is_a_crash_loop():
    history = RestartHistory(POLICY)
    looping = []
    for _ in range(6):
        deaths_in_a_row(history, 1)
        looping.append(history.crash_looping)
    assert looping == [False, False, False, False, True, True]


def test_deaths_spread_wider_than_the_window_are_no_crash_loop():
    history = RestartHistory(POLICY)
    for minute in range(0, 60, 2):  # one death every two minutes, for an hour
        history.died(started_at=minute * 60.0 - 1, now=minute * 60.0)
    assert not history.crash_looping
    assert history.recent_deaths == 3  # the window holds 5 minutes: deaths at t-4, t-2, t


@pytest.mark.parametrize(
    ("returncode", "said"),
    [
        (-9, "was killed by SIGKILL"),
        (-15, "was killed by SIGTERM"),
        (1, "exited with status 1"),
        (0, "exited with status 0"),
    ],
)
def test_exits_are_described_as_an_operator_reads_them(returncode, said):
    assert describe_exit(returncode) == said


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tiny_stack(tmp_path):
    """A Stack of two small real programs: one that exits at once with 3, one that sleeps."""
    stack = Stack(
        {f"{name}_PORT": "9" for name in ("AUTH", "GATEWAY", "CONVERTER", "NOTIFICATION")}, tmp_path
    )
    unanswered = "http://127.0.0.1:9/health"  # the discard port: never healthy
    stack.specs = {
        "crasher": ServiceSpec(
            "crasher", (sys.executable, "-c", "raise SystemExit(3)"), unanswered
        ),
        "steady": ServiceSpec(
            "steady", (sys.executable, "-c", "import time; time.sleep(60)"), unanswered
        ),
    }
    for name in stack.specs:
        stack.spawn(name)
    yield stack
    stack.stop(timeout=5)


def test_a_crash_looping_service_is_reported_and_restarted_while_the_others_run(tiny_stack, caplog):
    clock = FakeClock()
    supervisor = Supervisor(tiny_stack, clock=clock)
    steady_pid = tiny_stack.processes["steady"].pid
    caplog.set_level(logging.INFO, logger="devstack.supervisor")
    for death in range(1, 7):
        tiny_stack.processes["crasher"].wait(10)
        supervisor.check()
        assert "crasher" not in tiny_stack.processes  # waiting out its back-off
        clock.now = supervisor.due["crasher"] - 0.01
        supervisor.check()
        assert "crasher" not in tiny_stack.processes  # not a moment early
        clock.now = supervisor.due["crasher"]
        supervisor.check()
        assert "crasher" in tiny_stack.processes, f"not restarted after death {death}"

    assert supervisor.restarts() == {"crasher": 6, "steady": 0}
    assert tiny_stack.processes["steady"].pid == steady_pid
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "devstack.supervisor"]
    log_path = tiny_stack.log_path("crasher")
    assert lines[0] == (
        logging.WARNING,
        f"crasher exited with status 3; restart #1 in 1s (output in {log_path})",
    )
    assert [level for level, _ in lines] == [logging.WARNING] * 4 + [logging.ERROR] * 2
    assert lines[4] == (
        logging.ERROR,
        "CRASH LOOP: crasher has died 5 times in 300s (last: exited with status 3); "
        f"still restarting it, next in 16s; its output is in {log_path}",
    )
