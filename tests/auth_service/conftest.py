"""Fixtures for the auth service: a fresh MySQL database per test, served over real HTTP.

Each test gets its own database (``mysql_database``), its own app and its own
rate-limit counters; ``serve`` puts an app on a real socket in a thread so the
tests talk to it with ``requests`` as any client would.
"""

from __future__ import annotations

import base64
import dataclasses
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from flask import Flask
from werkzeug.serving import make_server

from auth_service import accounts, create_app, db
from auth_service.config import Argon2Config, Config, MySQLConfig
from auth_service.credentials import normalize_email
from common.config import LoggingConfig
from devstack.tcp_proxy import TcpProxy
from tests.support import forge

if TYPE_CHECKING:
    from tests.conftest import MySQLServer

# The cheapest parameters argon2 accepts, so hashing costs no test any time.
CHEAP_ARGON2 = Argon2Config(time_cost=1, memory_kib=64, parallelism=1)
DEFAULT_PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def signing_key() -> RSAPrivateKey:
    """Return the RSA key the service under test signs with, made once per session."""
    return forge.new_rsa_key()


@pytest.fixture(scope="session")
def other_key() -> RSAPrivateKey:
    """Return an RSA key the service does not trust."""
    return forge.new_rsa_key()


@pytest.fixture
def key_file(tmp_path: Path, signing_key: RSAPrivateKey) -> Path:
    """Write the signing key to a file, as JWT_PRIVATE_KEY_FILE names it."""
    path = tmp_path / "jwt.pem"
    path.write_text(forge.private_pem(signing_key))
    return path


@pytest.fixture
def config(mysql_server: MySQLServer, mysql_database: str, signing_key: RSAPrivateKey) -> Config:
    """Return a configuration for this test's fresh database with cheap hashing."""
    return Config(
        jwt_private_key=signing_key,
        mysql=MySQLConfig(
            host=mysql_server.host,
            port=mysql_server.port,
            user=mysql_server.user,
            password=mysql_server.password,
            database=mysql_database,
        ),
        argon2=CHEAP_ARGON2,
        # High enough that only the tests about rate limits ever meet them.
        login_rate_limit_client="1000/minute",
        login_rate_limit_account="1000/minute",
        environment="test",
        logging=LoggingConfig(level="INFO", format="text"),
    )


@pytest.fixture
def make_app(config: Config) -> Callable[..., Flask]:
    """Return a factory of apps on this test's database with the schema in place.

    ``make_app(allow_registration=True)`` changes fields of ``config``;
    ``make_app(init_db=False)`` leaves the database empty.
    """

    def make(*, init_db: bool = True, **changes: Any) -> Flask:
        app_config = dataclasses.replace(config, **changes)
        app = create_app(app_config)
        if init_db:
            db.init_db(app_config.mysql)
        return app

    return make


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """Return the app with the test's default configuration."""
    return make_app()


class LiveServer:
    """A Flask app served on 127.0.0.1 over a real socket by a threaded werkzeug server."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self.http = requests.Session()
        # A short poll keeps shutdown() from costing every test half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        """Return the absolute URL of ``path`` on this server."""
        return self.base_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """Send a GET request."""
        return self.http.get(self.url(path), timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """Send a POST request."""
        return self.http.post(self.url(path), timeout=10, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request with any method."""
        return self.http.request(method, self.url(path), timeout=10, **kwargs)

    def token(self, account: Account) -> str:
        """Log ``account`` in and return its access token."""
        response = self.login(account.email, account.password)
        assert response.status_code == 200, response.text
        return response.json()["token"]

    def login(
        self, email: str, password: str, *, headers: dict[str, str] | None = None
    ) -> requests.Response:
        """POST /login with HTTP Basic credentials, encoded as UTF-8, and other headers."""
        return self.post("/login", headers={**(headers or {}), **basic_auth(email, password)})

    def stop(self) -> None:
        """Stop serving and close the client's connections."""
        self.http.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def basic_auth(email: str, password: str) -> dict[str, str]:
    """Return an Authorization header carrying UTF-8 Basic credentials."""
    encoded = base64.b64encode(f"{email}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def bearer(token: str) -> dict[str, str]:
    """Return an Authorization header carrying a bearer token."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], LiveServer]]:
    """Return a function that serves an app over HTTP until the test ends."""
    servers: list[LiveServer] = []

    def start(app: Flask) -> LiveServer:
        servers.append(LiveServer(app))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live_server(serve: Callable[[Flask], LiveServer], app: Flask) -> LiveServer:
    """Serve the default app over HTTP."""
    return serve(app)


@dataclasses.dataclass(frozen=True)
class Account:
    """A user the test created, with the password it was created with."""

    id: int
    email: str
    password: str
    admin: bool


@pytest.fixture
def make_user(app: Flask) -> Callable[..., Account]:
    """Return a factory of users in this test's database."""

    def make(
        email: str = "user@example.com", password: str = DEFAULT_PASSWORD, *, admin: bool = False
    ) -> Account:
        with app.app_context():
            accounts.save_user(email, password, is_admin=admin)
            user = db.find_user(normalize_email(email))
        assert user is not None
        return Account(user.id, user.email, password, user.is_admin)

    return make


@pytest.fixture
def user(make_user: Callable[..., Account]) -> Account:
    """Return an ordinary user."""
    return make_user()


@pytest.fixture
def admin(make_user: Callable[..., Account]) -> Account:
    """Return an admin."""
    return make_user("admin@example.com", "admin password 1", admin=True)


@pytest.fixture
def mysql_proxy(mysql_server: MySQLServer) -> Iterator[TcpProxy]:
    """Put a TCP proxy in front of MySQL that the test can cut."""
    proxy = TcpProxy(mysql_server.host, mysql_server.port)
    yield proxy
    proxy.close()


@pytest.fixture
def proxied_config(config: Config, mysql_proxy: TcpProxy) -> Config:
    """Return the test's configuration reaching MySQL through ``mysql_proxy``."""
    return dataclasses.replace(
        config, mysql=dataclasses.replace(config.mysql, host="127.0.0.1", port=mysql_proxy.port)
    )
