"""``make run`` restarts a service that is SIGKILLed, and the system keeps finishing jobs.

The system is started the way ``make run`` starts it (``python -m devstack.run up``),
pointed through its environment at the session's real servers; each service's main
process is SIGKILLed, as the OOM killer would, and a video uploaded afterwards must
come back as an MP3 and an email.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from devstack import servers
from devstack.run import DEMO_EMAIL
from devstack.stack import healthy, service_specs
from devstack.system import free_ports, own_data, system_env
from tests.support.media import make_video, probe_duration
from tests.support.system import login, session_dependencies

pytestmark = pytest.mark.timeout(180)


class Output:
    """The lines a process writes, read on a thread, for a test to wait on."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, *, since: int = 0, timeout: float = 30.0) -> re.Match:
        """Return the first match of ``pattern`` in a line from index ``since`` on.

        Raises:
            AssertionError: no such line within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[since:]:
                    if match := re.search(pattern, line):
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    tail = "\n".join(self.lines[-30:])
                    raise AssertionError(f"no line matching {pattern!r} in {timeout}s:\n{tail}")
                self._changed.wait(remaining)

    def __len__(self) -> int:
        with self._changed:
            return len(self.lines)


@dataclass
class MakeRun:
    """A running ``python -m devstack.run up`` and where its system listens."""

    process: subprocess.Popen[str]
    output: Output
    run_dir: Path
    gateway: str
    health: dict[str, str]
    token: str = ""

    def started_pid(self, service: str, since: int) -> int:
        """Wait for the run to log a start of ``service`` from line ``since`` on; return its pid."""
        match = self.output.wait_for(rf"started {service} \(pid (\d+)\)", since=since)
        return int(match.group(1))

    def current_pid(self, service: str) -> int:
        """Return the pid of the last start of ``service`` the run logged."""
        starts = re.findall(rf"started {service} \(pid (\d+)\)", "\n".join(self.output.lines))
        return int(starts[-1])


@pytest.fixture(scope="module")
def make_run(
    tmp_path_factory, mysql_server, rabbitmq_config, mongo_server, mail_sink
) -> Iterator[MakeRun]:
    """Run ``make run``'s entry point against the session's servers; stop it afterwards."""
    run_dir = tmp_path_factory.mktemp("make-run")
    direct = session_dependencies(mysql_server, rabbitmq_config, mongo_server, mail_sink)
    # Every server given, so the run starts none of its own; cheaper password hashing,
    # to keep the start short.
    cheap_hashing = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "8192"}
    env = system_env(run_dir, free_ports(), direct, isolate="run", given=cheap_hashing)
    with own_data(env, direct):
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.run", "--run-dir", str(run_dir), "up"],
            cwd=servers.REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        gateway = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
        running = MakeRun(
            process,
            Output(process.stdout),
            run_dir,
            gateway,
            health={name: spec.health_url for name, spec in service_specs(env).items()},
        )
        try:
            running.output.wait_for("video2mp3 is running", timeout=90)
            running.token = login(gateway, DEMO_EMAIL, (run_dir / "demo-password").read_text())
            yield running
        finally:
            _stop(running.process)


def _stop(process: subprocess.Popen[str]) -> None:
    """Stop the run the way a terminal's Ctrl-C does, if a test has not already."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=1)


def alive(pid: int) -> bool:
    """Tell whether a process exists (and is not a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.parametrize("service", ["converter", "notification", "gateway", "auth"])
def test_a_sigkilled_service_is_restarted_and_jobs_still_finish(
    make_run, service, mail_sink, clip, tmp_path
):
    since = len(make_run.output)
    old_pid = make_run.current_pid(service)
    os.kill(old_pid, signal.SIGKILL)  # the main process only, as the OOM killer picks one

    make_run.output.wait_for(
        rf"{service} was killed by SIGKILL; restart #1 in 1s \(output in .*{service}\.log\)",
        since=since,
        timeout=10,
    )
    new_pid = make_run.started_pid(service, since=since)
    assert new_pid != old_pid
    make_run.output.wait_for(rf"{service} is up again \(restart #1\)", since=since, timeout=60)
    assert requests.get(make_run.health[service], timeout=5).status_code == 200

    mail_sink.clear()
    headers = {"Authorization": f"Bearer {make_run.token}"}
    with clip.open("rb") as video:
        accepted = requests.post(
            f"{make_run.gateway}/upload",
            headers=headers,
            files={"file": (f"after-{service}.mp4", video)},
            timeout=30,
        )
    assert accepted.status_code == 202, accepted.text
    [email] = mail_sink.wait_for(1, to=DEMO_EMAIL, timeout=60)
    assert f"after-{service}.mp4" in email["Subject"]
    fid = re.search(r"fid: ([0-9a-f]{24})", email.get_body(("plain",)).get_content()).group(1)
    mp3 = requests.get(
        f"{make_run.gateway}/download", params={"fid": fid}, headers=headers, timeout=30
    )
    assert mp3.status_code == 200
    assert mp3.headers["Content-Type"] == "audio/mpeg"
    (tmp_path / "out.mp3").write_bytes(mp3.content)
    assert abs(probe_duration(tmp_path / "out.mp3") - probe_duration(clip)) <= 0.1
    assert make_run.process.poll() is None  # the run itself never went down


def test_ctrl_c_during_a_back_off_stops_everything(make_run):
    pids = {name: make_run.current_pid(name) for name in make_run.health}
    since = len(make_run.output)
    os.kill(pids["converter"], signal.SIGKILL)
    make_run.output.wait_for(r"converter was killed by SIGKILL; restart #\d+ in", since=since)

    make_run.process.send_signal(signal.SIGINT)  # while the converter waits out its back-off
    assert make_run.process.wait(30) == 0
    make_run.output.wait_for(r"restarts during this run: .*converter \d", since=since, timeout=5)
    assert not re.search(r"started converter", "\n".join(make_run.output.lines[since:]))
    assert [name for name, pid in pids.items() if alive(pid)] == []
    assert [name for name, url in make_run.health.items() if healthy(url)] == []
