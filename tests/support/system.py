"""The whole system as separate processes, talked to over HTTP the way a user does.

Its fixtures are registered in tests/conftest.py for every test directory.

One stack per session (starting four services costs seconds); every test
works as its own freshly created user, so tests cannot see each other's
jobs, files or mail.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pymongo
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.stack import Stack, StackError
from devstack.system import Dependencies, auth_cli, free_ports, isolated_stack, system_env
from devstack.tcp_proxy import TcpProxy

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


def session_dependencies(mysql_server, rabbitmq_config, mongo_server, mail_sink) -> Dependencies:
    """Describe the session's servers as a system's dependencies."""
    return Dependencies(
        mysql_host=mysql_server.host,
        mysql_port=mysql_server.port,
        mysql_user=mysql_server.user,
        mysql_password=mysql_server.password,
        mongo_uri=mongo_server.uri,
        rabbitmq_url=rabbitmq_config.url,
        smtp_host=mail_sink.host,
        smtp_port=mail_sink.port,
    )


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
    direct = session_dependencies(mysql_server, rabbitmq_config, mongo_server, mail_sink)
    proxies = {
        "broker": TcpProxy(*_host_port(rabbitmq_config.url.split("@", 1)[1].split("/", 1)[0])),
        "mongo": TcpProxy(mongo_server.host, mongo_server.port),
        "mysql": TcpProxy(mysql_server.host, mysql_server.port),
        "smtp": TcpProxy(mail_sink.host, mail_sink.port),
    }
    proxied = replace(
        direct,
        mysql_host="127.0.0.1",
        mysql_port=proxies["mysql"].port,
        mongo_uri=proxies["mongo"].mongo_uri,
        rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{proxies['broker'].port}/%2F",
        smtp_host="127.0.0.1",
        smtp_port=proxies["smtp"].port,
    )
    given = {
        "APP_ENV": "test",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "8192",
        "LOGIN_RATE_LIMIT_CLIENT": "1000/minute",
        "LOGIN_RATE_LIMIT_ACCOUNT": "1000/minute",
        "MONGO_TIMEOUT_MS": "2000",
        "MAX_CONTENT_LENGTH": str(MAX_UPLOAD_BYTES),
        "WEB_CONCURRENCY": "2",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        **(extra_env or {}),
    }
    env = system_env(run_dir, free_ports(), proxied, isolate="e2e", given=given)
    with contextlib.ExitStack() as cleanup:
        for proxy in proxies.values():
            cleanup.callback(proxy.close)
        mongo = cleanup.enter_context(pymongo.MongoClient(mongo_server.uri))
        stack = cleanup.enter_context(isolated_stack(env, direct, run_dir))
        try:
            auth_cli(env, "create-user", ADMIN[0], "--password", ADMIN[1], "--admin")
            stack.start()
            gateway = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
            yield System(
                stack=stack,
                gateway=gateway,
                auth=f"http://127.0.0.1:{env['AUTH_PORT']}",
                env=env,
                mongo=mongo,
                proxies=proxies,
                admin_token=login(gateway, *ADMIN),
                signing_key=serialization.load_pem_private_key(
                    Path(env["JWT_PRIVATE_KEY_FILE"]).read_bytes(), password=None
                ),
            )
        except StackError as exc:
            pytest.fail(f"{exc}\n{_logs(stack)}", pytrace=False)


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
