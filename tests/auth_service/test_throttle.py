"""Login rate limits over real HTTP: per client on every attempt, per account on failures."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from flask import Flask

from auth_service.throttle import LoginThrottle
from common.errors import ConfigError
from tests.auth_service.conftest import Account, LiveServer

ServeWith = Callable[..., LiveServer]


@pytest.fixture
def serve_with(make_app: Callable[..., Flask], serve: Callable[[Flask], LiveServer]) -> ServeWith:
    """Serve an app whose configuration differs from the test default."""
    return lambda **changes: serve(make_app(**changes))


def assert_rate_limited(response: requests.Response, window_seconds: int = 60) -> None:
    assert response.status_code == 429
    assert response.json()["error"] == "rate_limited"
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= window_seconds
    assert f"{retry_after} seconds" in response.json()["message"]


def test_client_limit_counts_every_attempt(serve_with: ServeWith, user: Account) -> None:
    server = serve_with(login_rate_limit_client="3/minute")

    assert server.login(user.email, user.password).status_code == 200
    assert server.login(user.email, "wrong").status_code == 401
    assert server.login("nobody@example.com", "wrong").status_code == 401

    assert_rate_limited(server.login(user.email, user.password))
    assert_rate_limited(server.login("other@example.com", "whatever"))


def test_client_limit_counts_malformed_lengths_too(serve_with: ServeWith) -> None:
    server = serve_with(login_rate_limit_client="2/minute")

    assert server.login("a" * 300, "x").status_code == 401
    assert server.login("a@example.com", "x" * 2000).status_code == 401

    assert_rate_limited(server.login("a@example.com", "x"))


def test_account_limit_locks_after_failed_attempts(
    serve_with: ServeWith, make_user: Callable[..., Account]
) -> None:
    victim = make_user("victim@example.com")
    bystander = make_user("bystander@example.com")
    server = serve_with(login_rate_limit_client="100/minute", login_rate_limit_account="2/minute")

    assert server.login(victim.email, "guess 1").status_code == 401
    assert server.login(victim.email, "guess 2").status_code == 401

    assert_rate_limited(server.login(victim.email, "guess 3"))
    # The right password does not get through a lockout either...
    assert_rate_limited(server.login(victim.email, victim.password))
    # ...however it is spelled.
    assert_rate_limited(server.login(victim.email.upper(), victim.password))
    # Another account from the same client is unaffected.
    assert server.login(bystander.email, bystander.password).status_code == 200


def test_account_limit_treats_unknown_accounts_alike(serve_with: ServeWith) -> None:
    server = serve_with(login_rate_limit_client="100/minute", login_rate_limit_account="2/minute")

    for _ in range(2):
        assert server.login("ghost@example.com", "guess").status_code == 401

    locked = server.login("ghost@example.com", "guess")
    assert_rate_limited(locked)
    assert "for this account" in locked.json()["message"]


def test_successful_logins_do_not_count_against_the_account(
    serve_with: ServeWith, user: Account
) -> None:
    server = serve_with(login_rate_limit_client="100/minute", login_rate_limit_account="2/minute")

    for _ in range(4):
        assert server.login(user.email, user.password).status_code == 200


def test_client_is_the_forwarded_address_behind_a_trusted_proxy(
    serve_with: ServeWith, user: Account
) -> None:
    server = serve_with(trusted_proxies=1, login_rate_limit_client="2/minute")
    first = {"X-Forwarded-For": "203.0.113.1"}
    second = {"X-Forwarded-For": "203.0.113.2"}

    for _ in range(2):
        assert server.login(user.email, user.password, headers=first).status_code == 200

    assert_rate_limited(server.login(user.email, user.password, headers=first))
    assert server.login(user.email, user.password, headers=second).status_code == 200


def test_forwarded_header_is_ignored_without_trusted_proxies(
    serve_with: ServeWith, user: Account
) -> None:
    server = serve_with(login_rate_limit_client="2/minute")

    for client in ("203.0.113.1", "203.0.113.2"):
        response = server.login(user.email, user.password, headers={"X-Forwarded-For": client})
        assert response.status_code == 200

    spoofed = server.login(user.email, user.password, headers={"X-Forwarded-For": "203.0.113.3"})
    assert_rate_limited(spoofed)


def test_each_app_keeps_its_own_counts(serve_with: ServeWith, user: Account) -> None:
    first = serve_with(login_rate_limit_client="1/minute")
    second = serve_with(login_rate_limit_client="1/minute")

    assert first.login(user.email, user.password).status_code == 200
    assert_rate_limited(first.login(user.email, user.password))
    assert second.login(user.email, user.password).status_code == 200


def test_unknown_storage_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="RATELIMIT_STORAGE_URI"):
        LoginThrottle("nosuchstore://x", client_limit="1/minute", account_limit="1/minute")
