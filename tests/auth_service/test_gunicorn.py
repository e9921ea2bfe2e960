"""The service as deployed: gunicorn with the project's config module, over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from auth_service.config import Config
from devstack.servers import REPO_ROOT, free_port
from tests.auth_service.conftest import Account, basic_auth, bearer

STARTUP_SECONDS = 30


@pytest.fixture
def gunicorn_url(config: Config, key_file: Path, tmp_path: Path) -> Iterator[str]:
    """Run gunicorn on a free port against the test's database; stop it afterwards."""
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "AUTH_PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "MYSQL_HOST": config.mysql.host,
        "MYSQL_PORT": str(config.mysql.port),
        "MYSQL_USER": config.mysql.user,
        "MYSQL_PASSWORD": config.mysql.password,
        "MYSQL_DB": config.mysql.database,
        "JWT_PRIVATE_KEY_FILE": str(key_file),
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "64",
        "ARGON2_PARALLELISM": "1",
        "LOG_FORMAT": "text",
    }
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:auth_service.gunicorn_conf",
                "auth_service:create_app()",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not come up:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_gunicorn_serves_logins(gunicorn_url: str, user: Account) -> None:
    login = requests.post(
        f"{gunicorn_url}/login", headers=basic_auth(user.email, user.password), timeout=10
    )
    assert login.status_code == 200, login.text

    claims = requests.get(
        f"{gunicorn_url}/validate", headers=bearer(login.json()["token"]), timeout=10
    )
    assert claims.status_code == 200
    assert claims.json()["sub"] == user.email
    assert requests.get(f"{gunicorn_url}/ready", timeout=10).json()["status"] == "ready"
