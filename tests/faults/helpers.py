"""What the fault tests do over and over: upload, wait, count."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import requests

from tests.support.polling import wait_until


def upload(system, user, path: Path, timeout: float = 30) -> requests.Response:
    """Upload one file as ``user`` and return the gateway's answer."""
    with path.open("rb") as video:
        return requests.post(
            f"{system.gateway}/upload",
            headers=user.headers,
            files={"file": (path.name, video)},
            timeout=timeout,
        )


def jobs_of(system, user) -> list[dict]:
    """Return every job record of ``user`` straight from MongoDB."""
    return list(system.videos.jobs.find({"owner": user.email}))


def wait_all_done(system, user, count: int, timeout: float) -> None:
    """Wait until ``user`` has ``count`` jobs and all are done."""
    wait_until(
        lambda: [j["status"] for j in jobs_of(system, user)].count("done") == count,
        timeout=timeout,
        interval=0.2,
    )


def mp3s_per_job(system, user) -> collections.Counter:
    """Count the stored MP3 files of each of ``user``'s jobs."""
    job_ids = [job["_id"] for job in jobs_of(system, user)]
    counts = collections.Counter(dict.fromkeys(job_ids, 0))
    for stored in system.mp3s["fs.files"].find({"metadata.job_id": {"$in": job_ids}}):
        counts[stored["metadata"]["job_id"]] += 1
    return counts


def emails_per_job(mail_sink, user) -> collections.Counter:
    """Count the emails ``user`` received about each job."""
    return collections.Counter(m["X-Video2mp3-Job"] for m in mail_sink.messages(to=user.email))


class Repeatedly:
    """Run an action every ``every`` seconds on a thread until stopped; count the runs."""

    def __init__(self, action, every: float) -> None:
        self.runs = 0
        self.started_at: list[float] = []  # perf_counter() as each run began
        self.errors: list[BaseException] = []
        self._action = action
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Repeatedly:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(120)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self.started_at.append(time.perf_counter())
            try:
                self._action()
                self.runs += 1
            except Exception as exc:  # noqa: BLE001 - reported to the test
                self.errors.append(exc)
                return


def settle(seconds: float) -> None:
    """Give late duplicates a chance to show up before counting."""
    time.sleep(seconds)
