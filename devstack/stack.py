"""Run the four services as separate processes, the way an operator would.

``make run`` and the end-to-end tests both use this: each service starts
through its real entry point (gunicorn for the HTTP services, ``python -m``
for the workers) with its configuration in the environment, is waited for
on its health endpoint, and is stopped with SIGTERM (SIGKILL if it hangs).
Under ``make run``, ``devstack.supervisor`` also restarts a service that dies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pika

from common.config import Env, RabbitConfig
from common.messaging import connection_parameters, queue_family
from common.retry import RetryLadder
from converter.config import CONVERT_RETRY
from notification.config import NOTIFY_RETRY

log = logging.getLogger(__name__)

SERVICES = ("auth", "gateway", "converter", "notification")
# The work queues, by the variable that names each, and their default names.
QUEUES = (("VIDEO_QUEUE", "video"), ("MP3_QUEUE", "mp3"), ("WEBHOOK_QUEUE", "webhook"))


class StackError(RuntimeError):
    """A service did not start or died; the message points at its log."""


@dataclass(frozen=True)
class ServiceSpec:
    """How to start one service and how to tell it is up."""

    name: str
    command: tuple[str, ...]
    health_url: str


def service_specs(env: Mapping[str, str], python: str = sys.executable) -> dict[str, ServiceSpec]:
    """Describe the four services for the ports named in ``env``."""

    def gunicorn(package: str) -> tuple[str, ...]:
        return (
            python,
            "-m",
            "gunicorn",
            "-c",
            f"python:{package}.gunicorn_conf",
            f"{package}:create_app()",
        )

    return {
        "auth": ServiceSpec(
            "auth", gunicorn("auth_service"), f"http://127.0.0.1:{env['AUTH_PORT']}/health"
        ),
        "gateway": ServiceSpec(
            "gateway", gunicorn("gateway"), f"http://127.0.0.1:{env['GATEWAY_PORT']}/health"
        ),
        "converter": ServiceSpec(
            "converter",
            (python, "-m", "converter"),
            f"http://127.0.0.1:{env['CONVERTER_PORT']}/ready",
        ),
        "notification": ServiceSpec(
            "notification",
            (python, "-m", "notification"),
            f"http://127.0.0.1:{env['NOTIFICATION_PORT']}/ready",
        ),
    }


def healthy(url: str, timeout: float = 1.0) -> bool:
    """Tell whether ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own URL  # nosec B310
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Stack:
    """The four services as child processes sharing one environment."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        python: str = sys.executable,
        overrides: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.env = dict(env)
        # Per-service additions, e.g. auth trusting the gateway's X-Forwarded-For.
        self.overrides = {name: dict(values) for name, values in (overrides or {}).items()}
        self.log_dir = log_dir
        self.specs = service_specs(self.env, python)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, names: tuple[str, ...] = SERVICES, timeout: float = 60.0) -> None:
        """Start the named services and wait until each is healthy.

        Raises:
            StackError: one exited or did not become healthy in time.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            self.spawn(name)
        for name in names:
            self.wait_healthy(name, timeout)

    def spawn(self, name: str) -> None:
        """Start one service without waiting for it; its output is appended to its log."""
        spec = self.specs[name]
        with (self.log_dir / f"{name}.log").open("ab") as log_file:
            self.processes[name] = subprocess.Popen(
                spec.command,
                env={**self.env, **self.overrides.get(name, {})},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches only us; we stop them
            )
        log.info("started %s (pid %d)", name, self.processes[name].pid)

    def wait_healthy(self, name: str, timeout: float) -> None:
        """Wait until the service answers on its health URL.

        Raises:
            StackError: it exited or stayed unhealthy for ``timeout`` seconds.
        """
        spec, process = self.specs[name], self.processes[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(
                    f"{name} exited with {process.returncode}; see {self.log_path(name)}"
                )
            if healthy(spec.health_url):
                return
            time.sleep(0.1)
        raise StackError(f"{name} not healthy after {timeout:.0f}s; see {self.log_path(name)}")

    def log_path(self, name: str) -> Path:
        """Return where the service's output goes."""
        return self.log_dir / f"{name}.log"

    def dead(self) -> list[str]:
        """Return the services that have exited."""
        return [name for name, p in self.processes.items() if p.poll() is not None]

    def reap(self) -> dict[str, int]:
        """Forget the services that have exited and return their exit codes.

        What is left of each one's process group (a gunicorn's workers) is SIGKILLed,
        as the end of a container's main process takes the rest of it along.
        """
        exited = {}
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                del self.processes[name]
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                exited[name] = process.returncode
        return exited

    def kill(self, name: str) -> None:
        """SIGKILL a service (its whole process group), as a crash would."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Start a stopped or killed service again and wait until it is healthy."""
        if name in self.processes:
            self.stop((name,))
        self.spawn(name)
        self.wait_healthy(name, timeout)

    def stop(self, names: tuple[str, ...] | None = None, timeout: float = 20.0) -> None:
        """SIGTERM the services, then SIGKILL whatever is still running after ``timeout``."""
        chosen = [n for n in (names or tuple(self.processes)) if n in self.processes]
        for name in chosen:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.processes[name].pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in chosen:
            process = self.processes.pop(name)
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs; killing it", name, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def delete_queues(rabbit: RabbitConfig, env: Mapping[str, str]) -> None:
    """Delete every queue a system started with ``env`` declared: work, dead-letter and
    delay queues, the last of whichever retry ladders ``env`` gives the workers."""
    settings = Env(env)
    purge_queues(
        rabbit,
        [settings.str(name, default) for name, default in QUEUES],
        ladders=[
            RetryLadder.from_env(settings, "CONVERT", CONVERT_RETRY),
            RetryLadder.from_env(settings, "NOTIFY", NOTIFY_RETRY),
        ],
    )


def purge_queues(
    config: RabbitConfig, queues: Iterable[str], *, ladders: Iterable[RetryLadder] = ()
) -> None:
    """Delete the named queues, their dead-letter queues and the delay queues of ``ladders``
    (tests and benchmarks clean up after themselves with it)."""
    ladders = list(ladders)
    connection = pika.BlockingConnection(connection_parameters(config, "purge"))
    try:
        channel = connection.channel()
        for queue in queues:
            names = set(queue_family(queue))
            for ladder in ladders:
                names.update(queue_family(queue, ladder))
            for name in sorted(names):
                channel.queue_delete(name)
    finally:
        connection.close()
