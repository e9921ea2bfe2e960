"""Other processes' resident memory and children, read from /proc.

The tests (a gateway worker's memory under a hostile upload) and the benchmarks (memory
per request, and which pids to read CPU time of with ``common.procs``) both watch the
services' processes this way.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path


class RssSampler:
    """Follow the resident memory of some processes; keep each one's peak.

    On entry each process's peak counter (VmHWM) is reset where the kernel lets us
    (``/proc/PID/clear_refs``); a thread samples VmRSS meanwhile, and on exit the peak is
    the larger of the sampled maximum and VmHWM, so a short spike is not missed.
    """

    def __init__(self, pids: Sequence[int], interval: float = 0.02) -> None:
        self.pids = list(pids)
        self.interval = interval
        self.before = {pid: _status_kib(pid, "VmRSS") for pid in self.pids}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], _status_kib(pid, "VmRSS"))

    def __enter__(self) -> RssSampler:
        for pid in self.pids:
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to VmRSS
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for pid in self.pids:
            self.peak[pid] = max(self.peak[pid], _status_kib(pid, "VmHWM"))

    def growth_mb(self) -> float:
        """Return the largest rise of one process's RSS over its value before, in MB."""
        return max(self.peak[pid] - self.before[pid] for pid in self.pids) / 1024


def _status_kib(pid: int, field: str) -> int:
    """Return one KiB field of /proc/PID/status (VmRSS, VmHWM), 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def child_pids(pid: int) -> list[int]:
    """Return the direct children of a process (a gunicorn master's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)
