"""Start, reuse and stop the datastores and broker the services need.

MariaDB and RabbitMQ normally run on the development machine already; when one
is down it is started with the machine's own command and the caller learns that
it owns it (and so stops it afterwards). SecantusDB, the MongoDB-compatible
server used for development and tests, always runs as a separate program of
ours: it is GPL-2.0 and is never imported or shipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SECANTUS_VENV = REPO_ROOT / ".tools" / "secantus"


class ServerUnavailable(RuntimeError):
    """A server is down and could not be started; the message says what to do."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Tell whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for host:port to accept connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        time.sleep(0.1)
    return port_open(host, port)


@dataclass
class SystemServer:
    """A server the machine normally runs (MariaDB, RabbitMQ) that we may have to start."""

    name: str
    host: str
    port: int
    start_command: list[str]
    stop_command: list[str]
    hint: str
    start_timeout: float = 90.0
    started_by_us: bool = field(default=False, init=False)

    def ensure(self) -> None:
        """Reuse the running server or start it.

        Raises:
            ServerUnavailable: it is down and starting it failed.
        """
        if port_open(self.host, self.port):
            return
        if shutil.which(self.start_command[0]) is None:
            raise ServerUnavailable(
                f"{self.name} is not reachable on {self.host}:{self.port} and "
                f"{self.start_command[0]} is not installed. {self.hint}"
            )
        log.info("%s is down; starting it with: %s", self.name, " ".join(self.start_command))
        result = subprocess.run(self.start_command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not wait_for_port(self.host, self.port, self.start_timeout):
            raise ServerUnavailable(
                f"{self.name} is not reachable on {self.host}:{self.port} and starting it "
                f"failed ({result.stderr.strip() or 'it never opened its port'}). {self.hint}"
            )
        self.started_by_us = True

    def stop_if_started(self) -> None:
        """Stop the server if ``ensure`` started it."""
        if self.started_by_us:
            subprocess.run(self.stop_command, capture_output=True, check=False)
            self.started_by_us = False


def mariadb(host: str = "127.0.0.1", port: int = 3306) -> SystemServer:
    """Describe the machine's MariaDB server."""
    return SystemServer(
        name="MariaDB",
        host=host,
        port=port,
        start_command=[
            "start-stop-daemon",
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            "/usr/sbin/mariadbd",
        ],
        stop_command=["mariadb-admin", "-uroot", "shutdown"],
        hint="Start it with: start-stop-daemon --start --oknodo --background "
        "--exec /usr/sbin/mariadbd (or point MYSQL_HOST/MYSQL_PORT at another server).",
    )


def rabbitmq(host: str = "127.0.0.1", port: int = 5672) -> SystemServer:
    """Describe the machine's RabbitMQ server."""
    return SystemServer(
        name="RabbitMQ",
        host=host,
        port=port,
        start_command=["rabbitmq-server", "-detached"],
        stop_command=["rabbitmqctl", "stop"],
        hint="Start it with: rabbitmq-server -detached (or point RABBITMQ_URL at another broker).",
    )


def secantusd_executable() -> str:
    """Find ``secantusd-py``: $SECANTUSD, the project's tool venv, or PATH.

    Raises:
        ServerUnavailable: SecantusDB is not installed.
    """
    candidates = [
        os.environ.get("SECANTUSD"),
        str(SECANTUS_VENV / "bin" / "secantusd-py"),
        shutil.which("secantusd-py"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise ServerUnavailable(
        "SecantusDB (the MongoDB-compatible dev server) is not installed; "
        "run `make tools` or set SECANTUSD to the secantusd-py executable."
    )


class SecantusServer:
    """A SecantusDB process on a port of ours, in memory or on disk."""

    def __init__(
        self, port: int | None = None, storage: str = ":memory:", log_path: Path | None = None
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.storage = storage
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """Return the MongoDB URI clients connect with."""
        return f"mongodb://{self.host}:{self.port}/"

    @property
    def pid(self) -> int | None:
        """Return the server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it accepts connections.

        Raises:
            ServerUnavailable: it is not installed or did not come up in time.
        """
        command = [
            secantusd_executable(),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--storage-path",
            self.storage,
            "--standalone",
            "--cache-size",
            "256M",
        ]
        output = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        finally:
            if self.log_path:
                output.close()
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            raise ServerUnavailable(f"SecantusDB did not open port {self.port} in {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server; kill it if it does not exit in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            self._process.wait()
            self._process = None
