"""The whole system as separate processes, talked to over HTTP the way a user does.

Its fixtures are registered in tests/conftest.py for every test directory.

One stack per session (starting four services costs seconds); every test
works as its own freshly created user, so tests cannot see each other's
jobs, files or mail.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pymongo
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack import servers
from devstack.run import auth_cli
from devstack.stack import Stack, StackError, delete_queues
from tests.support.tcp_proxy import TcpProxy

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
ADMIN = ("admin@e2e.test", "admin-password-123")
WEBHOOK_SECRET = "whsec-e2e-secret"


@dataclass
class System:
    """Where the running system is, plus handles the tests use to inspect or break it.

    Every dependency (broker, MongoDB, MySQL, SMTP) is reached through its own
    ``TcpProxy`` in ``proxies``, so a test can cut one for all four services
    while the real server stays up for everything else.
    """

    stack: Stack
    gateway: str
    auth: str
    env: dict[str, str]
    mongo: pymongo.MongoClient
    proxies: dict[str, TcpProxy]
    admin_token: str
    signing_key: rsa.RSAPrivateKey

    @property
    def videos(self) -> pymongo.database.Database:
        return self.mongo[self.env["MONGO_VIDEOS_DB"]]

    @property
    def mp3s(self) -> pymongo.database.Database:
        return self.mongo[self.env["MONGO_MP3S_DB"]]


def login(base_url: str, email: str, password: str) -> str:
    """Log in with HTTP Basic and return the bearer token."""
    response = requests.post(f"{base_url}/login", auth=(email, password), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["token"]


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


@contextlib.contextmanager
def running_system(
    run_dir: Path,
    *,
    mysql_server,
    rabbitmq_config,
    mongo_server,
    mail_sink,
    extra_env: dict[str, str] | None = None,
) -> Iterator[System]:
    """Start auth, gateway, converter and notification against the test servers."""
    key_path = run_dir / "jwt.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    suffix = uuid.uuid4().hex[:10]
    database = f"v2m_e2e_{suffix}"
    ports = {
        name: servers.free_port()
        for name in ("AUTH_PORT", "GATEWAY_PORT", "CONVERTER_PORT", "NOTIFICATION_PORT")
    }
    proxies = {
        "broker": TcpProxy(*_host_port(rabbitmq_config.url.split("@", 1)[1].split("/", 1)[0])),
        "mongo": TcpProxy(mongo_server.host, mongo_server.port),
        "mysql": TcpProxy(mysql_server.host, mysql_server.port),
        "smtp": TcpProxy(mail_sink.host, mail_sink.port),
    }
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(run_dir)),
        "APP_ENV": "test",
        "LOG_FORMAT": "text",
        "MYSQL_HOST": "127.0.0.1",
        "MYSQL_PORT": str(proxies["mysql"].port),
        "MYSQL_USER": mysql_server.user,
        "MYSQL_PASSWORD": mysql_server.password,
        "MYSQL_DB": database,
        "JWT_PRIVATE_KEY_FILE": str(key_path),
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "8192",
        "LOGIN_RATE_LIMIT_CLIENT": "1000/minute",
        "LOGIN_RATE_LIMIT_ACCOUNT": "1000/minute",
        "MONGO_URI": proxies["mongo"].mongo_uri,
        "MONGO_TIMEOUT_MS": "2000",
        "MONGO_VIDEOS_DB": f"videos_{suffix}",
        "MONGO_MP3S_DB": f"mp3s_{suffix}",
        "RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{proxies['broker'].port}/%2F",
        "VIDEO_QUEUE": f"e2e-{suffix}.video",
        "MP3_QUEUE": f"e2e-{suffix}.mp3",
        "WEBHOOK_QUEUE": f"e2e-{suffix}.webhook",
        "AUTH_SVC_ADDRESS": f"127.0.0.1:{ports['AUTH_PORT']}",
        "PUBLIC_URL": f"http://127.0.0.1:{ports['GATEWAY_PORT']}",
        "MAX_CONTENT_LENGTH": str(MAX_UPLOAD_BYTES),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(proxies["smtp"].port),
        "BIND_HOST": "127.0.0.1",
        "HEALTH_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        # The tests' webhook receivers listen on loopback, on ports of their own.
        "EGRESS_ALLOW_PRIVATE": "true",
        "EGRESS_PORTS": "any",
        **{name: str(port) for name, port in ports.items()},
        **(extra_env or {}),
    }
    overrides = {
        "auth": {"TRUSTED_PROXIES": "1", "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics-auth")},
        "gateway": {"PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics-gateway")},
    }
    stack = Stack(env, run_dir / "logs", overrides=overrides)
    admin = mysql_server.connect()
    admin.cursor().execute(f"CREATE DATABASE `{database}`")
    mongo = pymongo.MongoClient(mongo_server.uri)
    try:
        auth_cli(env, "init-db")
        auth_cli(env, "create-user", ADMIN[0], "--password", ADMIN[1], "--admin")
        stack.start()
        gateway = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
        yield System(
            stack=stack,
            gateway=gateway,
            auth=f"http://127.0.0.1:{ports['AUTH_PORT']}",
            env=env,
            mongo=mongo,
            proxies=proxies,
            admin_token=login(gateway, *ADMIN),
            signing_key=key,
        )
    except StackError as exc:
        pytest.fail(f"{exc}\n{_logs(stack)}", pytrace=False)
    finally:
        stack.stop()
        for proxy in proxies.values():
            proxy.close()
        delete_queues(rabbitmq_config, env)
        for name in (env["MONGO_VIDEOS_DB"], env["MONGO_MP3S_DB"]):
            mongo.drop_database(name)
        mongo.close()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()


@pytest.fixture(scope="session")
def start_system(
    tmp_path_factory, mysql_server, rabbitmq_config, mongo_server, mail_sink
) -> Callable[..., contextlib.AbstractContextManager[System]]:
    """Return a function that starts a system on the session's servers (a context manager)."""

    def start(name: str, extra_env: dict[str, str] | None = None):
        return running_system(
            tmp_path_factory.mktemp(name),
            mysql_server=mysql_server,
            rabbitmq_config=rabbitmq_config,
            mongo_server=mongo_server,
            mail_sink=mail_sink,
            extra_env=extra_env,
        )

    return start


@pytest.fixture(scope="session")
def system(start_system) -> Iterator[System]:
    """The whole system, shared by the session's end-to-end tests."""
    with start_system("stack") as running:
        yield running


def _logs(stack: Stack) -> str:
    return "\n".join(
        f"--- {name} ---\n{stack.log_path(name).read_text(errors='replace')[-4000:]}"
        for name in stack.specs
        if stack.log_path(name).exists()
    )


@dataclass
class User:
    """A user of the running system, logged in."""

    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def new_user(system: System, *, admin: bool = False) -> User:
    """Create a user (an admin if asked) through auth's admin API and log it in."""
    email = f"user-{uuid.uuid4().hex[:10]}@e2e.test"
    password = f"pw-{uuid.uuid4().hex}"
    response = requests.post(
        f"{system.auth}/users",
        json={"email": email, "password": password, "admin": admin},
        headers={"Authorization": f"Bearer {system.admin_token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return User(email, password, login(system.gateway, email, password))


@pytest.fixture
def make_user(system) -> Callable[[], User]:
    """Hand out fresh users of the session's system."""
    return lambda: new_user(system)


@pytest.fixture
def user(make_user) -> User:
    return make_user()
