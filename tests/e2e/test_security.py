"""Security by default, checked on the running system."""

from __future__ import annotations

import pytest
import requests


def test_passwords_and_tokens_never_reach_the_logs(system, make_user):
    user = make_user()
    requests.post(f"{system.gateway}/login", auth=(user.email, user.password), timeout=30)
    requests.post(
        f"{system.gateway}/login", auth=(user.email, "wrong-" + user.password), timeout=30
    )
    requests.post(f"{system.auth}/login", auth=(user.email, user.password), timeout=30)
    requests.get(f"{system.gateway}/jobs", headers=user.headers, timeout=10)
    logs = "".join(
        system.stack.log_path(name).read_text(errors="replace") for name in ("auth", "gateway")
    )
    assert user.email in logs  # the lines about this user were written...
    assert user.password not in logs  # ...without its password
    assert user.token not in logs
    assert user.token.split(".")[2] not in logs  # not even the signature


@pytest.mark.parametrize(
    ("method", "path"),
    [("OPTIONS", "/upload"), ("GET", "/jobs"), ("POST", "/login"), ("OPTIONS", "/login")],
)
def test_cross_origin_requests_get_no_cors_grant(system, user, method, path):
    response = requests.request(
        method,
        f"{system.gateway}{path}",
        timeout=10,
        headers={
            **user.headers,
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    granted = {
        name.lower() for name in response.headers if name.lower().startswith("access-control-")
    }
    assert granted == set()


def test_admin_comes_from_the_database_not_the_request(system, user):
    # A user cannot make itself admin: the users endpoint needs an admin token...
    response = requests.post(
        f"{system.auth}/users",
        headers=user.headers,
        timeout=10,
        json={"email": "sneaky@e2e.test", "password": "long enough pw", "admin": True},
    )
    assert response.status_code == 403
    # ...and its own token says what the database says.
    claims = requests.get(f"{system.auth}/validate", headers=user.headers, timeout=10).json()
    assert claims["admin"] is False
