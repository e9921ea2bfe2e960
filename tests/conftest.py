"""Session fixtures that start or reuse real servers, and function fixtures that isolate.

MariaDB and RabbitMQ are the machine's own (started here if down, and then
stopped at the end); a genuine mongod (a single-node replica set in a temporary
folder) and the SMTP sink are started for the session.
A server that cannot be had skips its tests locally but fails them under
``CI=true``, so a green CI always means the real path ran.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import mysql.connector
import pymongo
import pytest

from common.config import MongoConfig, RabbitConfig
from common.storage import Storage
from devstack import servers
from devstack.mailsink import MailSink
from devstack.stack import purge_queues

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# A pytest that a non-interactive shell started in the background (make test's shards) has
# SIGINT ignored, and so would every program it starts, whereas the CLI's tests press
# Ctrl-C on theirs. Python's own handler here is reset to the default for each child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def unavailable(message: str) -> None:
    """Skip the test locally, fail it in CI: a missing server is never a pass there."""
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class MySQLServer:
    """Where the test MySQL server listens and how to log in as an administrator."""

    host: str
    port: int
    user: str
    password: str

    def connect(self, database: str | None = None) -> mysql.connector.MySQLConnection:
        """Open an administrative connection."""
        return mysql.connector.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            connection_timeout=5,
        )


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[MySQLServer]:
    """Reuse the machine's MariaDB, starting it if it is down."""
    server = MySQLServer(
        host=os.environ.get("TEST_MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("TEST_MYSQL_PORT", "3306")),
        user=os.environ.get("TEST_MYSQL_USER", "root"),
        password=os.environ.get("TEST_MYSQL_PASSWORD", ""),
    )
    local = servers.mariadb(server.host, server.port)
    try:
        local.ensure()
    except servers.ServerUnavailable as exc:
        unavailable(str(exc))
    yield server
    local.stop_if_started()


@pytest.fixture
def mysql_database(mysql_server: MySQLServer) -> Iterator[str]:
    """Create an empty database for one test and drop it afterwards."""
    name = f"v2m_test_{uuid.uuid4().hex[:12]}"
    admin = mysql_server.connect()
    try:
        admin.cursor().execute(f"CREATE DATABASE `{name}`")
        yield name
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(scope="session")
def rabbitmq_config() -> Iterator[RabbitConfig]:
    """Reuse the machine's RabbitMQ, starting it if it is down."""
    host = os.environ.get("TEST_RABBITMQ_HOST", "127.0.0.1")
    port = int(os.environ.get("TEST_RABBITMQ_PORT", "5672"))
    local = servers.rabbitmq(host, port)
    try:
        local.ensure()
    except servers.ServerUnavailable as exc:
        unavailable(str(exc))
    yield RabbitConfig(url=f"amqp://guest:guest@{host}:{port}/%2F")
    local.stop_if_started()


@pytest.fixture
def queue_name(rabbitmq_config: RabbitConfig) -> Iterator[Callable[[str], str]]:
    """Hand out queue names unique to this test and delete those queues afterwards.

    ``queue_name("video")`` returns ``test-<random>.video``; every queue handed
    out, and its dead-letter queue, is deleted at teardown.
    """
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    handed_out: list[str] = []

    def make(name: str) -> str:
        handed_out.append(f"{prefix}.{name}")
        return handed_out[-1]

    yield make
    purge_queues(rabbitmq_config, handed_out)


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[servers.MongoServer]:
    """Start a throwaway mongod (single-node replica set, data in a temp folder) for the session."""
    server = servers.MongoServer()
    try:
        server.start()
    except servers.ServerUnavailable as exc:
        unavailable(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mongo_uri(mongo_server: servers.MongoServer) -> str:
    """Return the URI of the session's MongoDB replica set."""
    return mongo_server.uri


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[MailSink]:
    """Run an SMTP sink on a free port for the session."""
    sink = MailSink(servers.free_port())
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def mailbox(mail_sink: MailSink) -> MailSink:
    """Hand the test the SMTP sink with no mail in it."""
    mail_sink.clear()
    return mail_sink


@pytest.fixture
def mongo_config(mongo_uri: str) -> Iterator[MongoConfig]:
    """Give the test its own video and MP3 databases and drop them afterwards."""
    suffix = uuid.uuid4().hex[:10]
    config = MongoConfig(
        uri=mongo_uri, videos_db=f"videos_{suffix}", mp3s_db=f"mp3s_{suffix}", timeout_ms=3000
    )
    yield config
    client = pymongo.MongoClient(mongo_uri)
    for database in (config.videos_db, config.mp3s_db):
        client.drop_database(database)
    client.close()


@pytest.fixture
def storage(mongo_config: MongoConfig) -> Iterator[Storage]:
    """Open the test's GridFS buckets."""
    store = Storage(mongo_config)
    yield store
    store.close()


# The running system (four services as processes) and its users; defined apart
# because they are long, imported here so that one stack serves every directory.
from tests.support.system import make_user, start_system, system, user  # noqa: E402, F401
