"""The converter's /health fails while a conversion is wedged, so Kubernetes restarts it."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.worker import HealthServer, StallWatch
from converter.config import CONVERT_STALL_SECONDS, Config
from converter.transcode import transcode
from tests.support.media import ffmpeg_children

# Stands for the shipped CONVERT_STALL_SECONDS=300: one second of no progress
# against ffmpeg's reports every 0.1 s here (0.5 s when shipped).
STALL_AFTER = 1.0


class IdleConsumer:
    """What the health server asks of a consumer for /ready."""

    queue = "video"
    is_connected = True


def health(port: int, path: str = "/health") -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def wait_for_health(port: int, status: int, *, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        answer, body = health(port)
        if answer == status:
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"/health stayed {answer} {body}, expected {status}")
        time.sleep(0.05)


@pytest.fixture
def stall() -> StallWatch:
    return StallWatch(STALL_AFTER)


@pytest.fixture
def health_port(stall: StallWatch) -> Iterator[int]:
    server = HealthServer([IdleConsumer()], host="127.0.0.1", port=0, stall=stall)  # type: ignore[arg-type]
    server.start()
    yield server.port
    server.stop()


def test_the_shipped_stall_limit_is_five_minutes_and_configurable() -> None:
    assert CONVERT_STALL_SECONDS == 300
    assert Config.from_env({}).stall_after == 300
    assert Config.from_env({"CONVERT_STALL_SECONDS": "120"}).stall_after == 120


def test_health_fails_while_ffmpeg_is_wedged_and_recovers_when_it_moves(
    tmp_path: Path, long_wav: Path, fast_progress: None, stall: StallWatch, health_port: int
) -> None:
    seen: dict[str, object] = {}

    def wedge_then_release() -> None:
        [pid] = ffmpeg_children()
        os.kill(pid, signal.SIGSTOP)  # as a stuck ffmpeg: alive, silent, not working
        try:
            seen["wedged"] = wait_for_health(health_port, 503)
        finally:
            os.kill(pid, signal.SIGCONT)
        seen["moving"] = wait_for_health(health_port, 200)
        seen["still_converting"] = ffmpeg_children() == [pid]

    wedger = threading.Thread(target=wedge_then_release)

    def start_wedger(percent: int) -> None:
        if wedger.ident is None:  # not started yet
            wedger.start()

    assert health(health_port)[0] == 200  # idle
    with stall.working():
        transcode(
            long_wav, tmp_path / "out.mp3", on_progress=start_wedger, heartbeat=stall.progressed
        )
    wedger.join()

    wedged = seen["wedged"]
    assert isinstance(wedged, dict)
    assert wedged["status"] == "stalled"
    assert wedged["message"].startswith("no progress for ")
    assert seen["moving"] == {"status": "ok"}
    assert seen["still_converting"] is True
    assert health(health_port) == (200, {"status": "ok"})


def test_a_stall_counts_from_the_last_progress_of_work_in_hand() -> None:
    now = [0.0]
    stall = StallWatch(300.0, clock=lambda: now[0])

    with stall.working():
        now[0] = 299.0
        assert stall.problem() is None
        stall.progressed()
        now[0] = 598.0
        assert stall.problem() is None
        now[0] = 599.5
        assert stall.problem() == "no progress for 300 s (the limit is 300 s)"
    now[0] = 10_000.0
    stall.progressed()  # a late report from work already over changes nothing
    assert stall.problem() is None


def test_ready_names_each_queue_in_the_body_every_service_uses() -> None:
    connected, lost = IdleConsumer(), IdleConsumer()
    lost.queue, lost.is_connected = "webhook", False
    server = HealthServer([connected, lost], host="127.0.0.1", port=0)  # type: ignore[list-item]
    server.start()
    try:
        assert health(server.port, "/ready") == (
            503,
            {
                "status": "unavailable",
                "checks": {"queue video": "ok", "queue webhook": "unavailable"},
            },
        )
        lost.is_connected = True
        assert health(server.port, "/ready")[0] == 200
    finally:
        server.stop()
