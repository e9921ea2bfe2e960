"""How the benchmarks time runs and read what they cost.

This machine is small (2 cores) and shared, so every comparison is made in one run
against a baseline measured alongside it, the two interleaved (A, B, A, B, ...); results.py
reports each series as min and median, and a ratio as the median of the paired ratios, so
a slow spell hits both sides.

``python -m bench.measurement call MODULE:FUNCTION ARG...`` runs one function in a fresh
process and prints what it cost as JSON; ``measure_call`` uses it, so each measured run
gets its own peak-RSS counter for the ffmpeg processes it starts. Other processes' CPU
time is read from /proc with ``common.procs`` (their memory with ``devstack.procs``).
"""

from __future__ import annotations

import importlib
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import ROOT
from bench.media import bare_ffmpeg
from bench.results import Series
from common.procs import cpu_seconds


def interleave(runs: int, **actions: Callable[[], float]) -> dict[str, Series]:
    """Run each action ``runs`` times in turn (A, B, C, A, B, C, ...) and collect the values.

    The order rotates every round so no action always follows the same neighbour.
    """
    names = list(actions)
    series = {name: Series() for name in names}
    for round_number in range(runs):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            series[name].add(actions[name]())
    return series


def timed_bare_ffmpeg(source: Path) -> float:
    """Return the wall seconds of the reference conversion of ``source``."""
    with tempfile.TemporaryDirectory(prefix="v2m-bench-") as tmp:
        started = time.perf_counter()
        bare_ffmpeg(source, Path(tmp) / "out.mp3")
        return time.perf_counter() - started


@dataclass(frozen=True)
class Cost:
    """What one run cost: wall seconds, CPU seconds (this process and its children), peak RSS."""

    wall: float
    cpu: float
    peak_rss_mb: float


def measure_call(target: str, *args: str) -> Cost:
    """Run ``module:function(*args)`` in a fresh Python and return what the call cost.

    A function that returns a callable has only that callable measured, so it can do
    its preparation first.

    CPU is user+sys of that Python during the call plus that of the processes it waited
    for (ffmpeg); peak RSS is the largest of those child processes.
    """
    completed = subprocess.run(
        [sys.executable, "-m", "bench.measurement", "call", target, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{target} failed:\n{completed.stderr[-3000:]}")
    return Cost(**json.loads(completed.stdout.strip().splitlines()[-1]))


class CostLog:
    """What each named, measured call cost, run after run (``interleave``'s actions)."""

    def __init__(self) -> None:
        self._costs: dict[str, list[Cost]] = {}

    def action(self, name: str, target: str, *args: str) -> Callable[[], float]:
        """Return an action that measures ``target(*args)`` in a fresh process, logs it
        under ``name`` and returns its wall seconds."""

        def run() -> float:
            cost = measure_call(target, *args)
            self._costs.setdefault(name, []).append(cost)
            return cost.wall

        return run

    def series(self, name: str, field: str) -> Series:
        """Return one field (``wall``, ``cpu``, ``peak_rss_mb``) of ``name``'s runs."""
        return Series([getattr(cost, field) for cost in self._costs[name]])


def _call(target: str, args: Sequence[str]) -> None:
    module_name, _, function_name = target.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = function(*args)
    if callable(result):  # it prepared (e.g. probed); measure only what it returned
        self_before = resource.getrusage(resource.RUSAGE_SELF)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result()
    wall = time.perf_counter() - started
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(
        getattr(after, name) - getattr(before, name)
        for before, after in ((self_before, self_after), (children_before, children_after))
        for name in ("ru_utime", "ru_stime")
    )
    # Linux reports ru_maxrss in KiB; for children it is the largest one waited for.
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_rss_mb": children_after.ru_maxrss / 1024}))


def server_cpu_per_call(pid: int, call: Callable[[], object], calls: int) -> float:
    """Return the server's CPU milliseconds per ``call``, over ``calls`` calls."""
    before = cpu_seconds(pid)
    for _ in range(calls):
        call()
    return (cpu_seconds(pid) - before) * 1000 / calls


class CpuWindow:
    """The CPU seconds of watched process groups, and of this process as ``client``,
    between two ``perf_counter()`` moments; read on timer threads while a load runs."""

    def __init__(self, start: float, end: float, watch: dict[str, list[int]], client: str) -> None:
        self._watch = watch
        self._client = client
        self._snapshots: list[dict[str, float]] = []
        self._timers = [
            threading.Timer(max(0.0, moment - time.perf_counter()), self._snapshot)
            for moment in (start, end)
        ]

    def __enter__(self) -> CpuWindow:
        for timer in self._timers:
            timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        for timer in self._timers:
            timer.join()

    def used(self) -> dict[str, float]:
        """Return each group's CPU seconds within the window (after the block)."""
        before, after = self._snapshots
        return {name: after[name] - before[name] for name in before}

    def _snapshot(self) -> None:
        watch = self._watch
        snapshot = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in watch.items()}
        own = resource.getrusage(resource.RUSAGE_SELF)
        snapshot[self._client] = own.ru_utime + own.ru_stime
        self._snapshots.append(snapshot)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "call":
        _call(sys.argv[2], sys.argv[3:])
    else:
        sys.exit("usage: python -m bench.measurement call MODULE:FUNCTION ARG...")
