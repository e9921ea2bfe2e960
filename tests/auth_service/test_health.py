"""Liveness, readiness, and what clients see while MySQL is down and once it is back."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import requests
from flask import Flask

from auth_service import create_app
from auth_service.config import Config
from devstack.servers import free_port
from devstack.tcp_proxy import TcpProxy
from tests.auth_service.conftest import Account, LiveServer
from tests.support.polling import wait_until


def assert_unavailable(response: requests.Response, code: str) -> None:
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert body["message"]


def test_health_needs_no_database(
    make_app: Callable[..., Flask], serve: Callable[[Flask], LiveServer], config: Config
) -> None:
    nowhere = dataclasses.replace(config.mysql, port=free_port())
    server = serve(make_app(init_db=False, mysql=nowhere))

    response = server.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_when_the_users_table_exists(live_server: LiveServer) -> None:
    response = live_server.get("/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"mysql": "ok"}}


def test_not_ready_before_init_db(
    make_app: Callable[..., Flask], serve: Callable[[Flask], LiveServer]
) -> None:
    server = serve(make_app(init_db=False))

    assert_not_ready(server.get("/ready"))
    assert_unavailable(server.login("a@example.com", "password"), "service_unavailable")


def test_mysql_outage_is_503_and_recovers_by_itself(
    serve: Callable[[Flask], LiveServer],
    proxied_config: Config,
    mysql_proxy: TcpProxy,
    user: Account,
) -> None:
    server = serve(create_app(proxied_config))
    assert server.login(user.email, user.password).status_code == 200

    mysql_proxy.refuse()
    down_login = server.login(user.email, user.password)
    down_ready = server.get("/ready")
    down_create = server.post("/users", json={"email": "x@example.com", "password": "12345678"})

    assert_unavailable(down_login, "service_unavailable")
    assert down_login.headers["Retry-After"].isdigit()
    assert_not_ready(down_ready)
    assert down_create.status_code == 401  # refused before any database work
    assert server.get("/health").status_code == 200

    mysql_proxy.accept()

    assert server.get("/ready").status_code == 200
    assert server.login(user.email, user.password).status_code == 200


def test_connections_severed_between_requests_are_not_reused(
    serve: Callable[[Flask], LiveServer],
    proxied_config: Config,
    mysql_proxy: TcpProxy,
    user: Account,
) -> None:
    server = serve(create_app(proxied_config))
    assert server.login(user.email, user.password).status_code == 200

    mysql_proxy.drop()

    assert server.login(user.email, user.password).status_code == 200
    # Each request closes its connection when it ends; the proxy sees that shortly.
    wait_until(lambda: mysql_proxy.connection_count == 0, timeout=5)


def assert_not_ready(response) -> None:
    """The one /ready body of every service: which dependency is missing."""
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"mysql": "unavailable"}}
