"""One local system: the four services' environment, signing key, data and users.

``make run`` (``devstack.run``), the tests (``tests/support/system.py``) and the benchmarks
(``bench/system.py``) all build their system here and pass only what differs: make run
its well-known ports and lasting data under ``.run/``, the tests a proxy in front of each
dependency and cheap password hashing, the benchmarks a mongod of their own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import mysql.connector
import pymongo

from common.config import RabbitConfig
from devstack import servers
from devstack.stack import QUEUES, Stack, delete_queues

# make run's ports; the tests and the benchmarks take free_ports().
WELL_KNOWN_PORTS = {
    "GATEWAY_PORT": 8000,
    "AUTH_PORT": 5000,
    "CONVERTER_PORT": 9101,
    "NOTIFICATION_PORT": 9102,
}
# A default that is dropped when the variable is given under its other name.
_ALIASES = {
    "EGRESS_ALLOW_PRIVATE": "WEBHOOK_ALLOW_PRIVATE",
    "JWT_PRIVATE_KEY_FILE": "JWT_PRIVATE_KEY",
}


def free_ports() -> dict[str, int]:
    """Pick a free port for each service."""
    return {name: servers.free_port() for name in WELL_KNOWN_PORTS}


@dataclass(frozen=True)
class Dependencies:
    """Where a system's servers listen, with the login of MySQL's administrator."""

    mysql_host: str = "127.0.0.1"
    mysql_port: int = 3306
    mysql_user: str = "root"
    mysql_password: str = ""
    # No replicaSet= here: the driver discovers ours, and a server already on the
    # port (make run reuses it) may be a standalone one.
    mongo_uri: str = "mongodb://127.0.0.1:27017/"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025


def system_env(
    run_dir: Path,
    ports: Mapping[str, int | str] = WELL_KNOWN_PORTS,
    dependencies: Dependencies | None = None,
    *,
    isolate: str | None = None,
    given: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the four services' environment: ``given`` over the local defaults.

    With ``isolate`` (a label such as ``"e2e"``) the system gets queues and MySQL and
    MongoDB databases of its own, named after the label and a random suffix.
    """
    dependencies = dependencies or Dependencies()
    given = given or {}
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(run_dir)),
        **{name: str(port) for name, port in ports.items()},
        "LOG_FORMAT": "text",
        # A development machine: listen on loopback only unless told otherwise.
        "BIND_HOST": "127.0.0.1",
        "HEALTH_HOST": "127.0.0.1",
        "MYSQL_HOST": dependencies.mysql_host,
        "MYSQL_PORT": str(dependencies.mysql_port),
        "MYSQL_USER": dependencies.mysql_user,
        "MYSQL_PASSWORD": dependencies.mysql_password,
        "MONGO_URI": dependencies.mongo_uri,
        "RABBITMQ_URL": dependencies.rabbitmq_url,
        "SMTP_HOST": dependencies.smtp_host,
        "SMTP_PORT": str(dependencies.smtp_port),
        "SMTP_SECURITY": "none",
        "MAX_CONTENT_LENGTH": "2GiB",
        "JWT_PRIVATE_KEY_FILE": str(run_dir / "jwt-private.pem"),
        # Callback receivers in development usually listen on this machine, on any port.
        "EGRESS_ALLOW_PRIVATE": "true",
        "EGRESS_PORTS": "any",
        **(_own_names(isolate) if isolate else {}),
        **given,
    }
    for name, alias in _ALIASES.items():
        if alias in given and name not in given:
            del env[name]
    env.setdefault("AUTH_SVC_ADDRESS", f"127.0.0.1:{env['AUTH_PORT']}")
    env.setdefault("PUBLIC_URL", f"http://127.0.0.1:{env['GATEWAY_PORT']}")
    if "WEBHOOK_SECRET" not in env:
        env["WEBHOOK_SECRET"] = run_secret(run_dir / "webhook-secret")
    return env


def _own_names(label: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {
        "MYSQL_DB": f"v2m_{label}_{suffix}",
        "MONGO_VIDEOS_DB": f"videos_{suffix}",
        "MONGO_MP3S_DB": f"mp3s_{suffix}",
        **{name: f"{label}-{suffix}.{default}" for name, default in QUEUES},
    }


def run_secret(path: Path) -> str:
    """Return the secret kept in ``path``, making it on first use (readable by its owner)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def service_stack(env: Mapping[str, str], run_dir: Path) -> Stack:
    """Return the four services of ``env`` as a ``Stack`` logging under ``run_dir``."""
    overrides = {
        # Auth sees clients through the gateway, which sets X-Forwarded-For; and each
        # gunicorn keeps its workers' metrics in its own directory (multiprocess mode).
        "auth": {
            "TRUSTED_PROXIES": env.get("TRUSTED_PROXIES", "1"),
            "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics" / "auth"),
        },
        "gateway": {"PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics" / "gateway")},
    }
    return Stack(env, run_dir / "logs", overrides=overrides)


def auth_cli(env: Mapping[str, str], *args: str, stdin: str | None = None) -> str:
    """Run one of the auth service's operator commands and return its output.

    Raises:
        SystemExit: the command failed; its message is shown.
    """
    command = [sys.executable, "-m", "auth_service", *args]
    result = subprocess.run(command, env=dict(env), input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"auth_service {args[0]} failed:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def prepare_auth(env: Mapping[str, str], key_bits: int = 3072) -> None:
    """Generate the signing key if its file is missing, and create the users schema."""
    key_file = env.get("JWT_PRIVATE_KEY_FILE")
    if key_file and not Path(key_file).exists():
        Path(key_file).parent.mkdir(parents=True, exist_ok=True)
        auth_cli(env, "gen-key", key_file, "--bits", str(key_bits))
    auth_cli(env, "init-db")


@contextlib.contextmanager
def own_data(env: Mapping[str, str], dependencies: Dependencies) -> Iterator[None]:
    """Create ``env``'s MySQL database; afterwards drop it, its MongoDB databases and queues."""
    admin = mysql.connector.connect(
        host=dependencies.mysql_host,
        port=dependencies.mysql_port,
        user=dependencies.mysql_user,
        password=dependencies.mysql_password,
        connection_timeout=5,
    )
    database = env["MYSQL_DB"]
    # Each step runs even if one before it fails.
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(admin.close)
        admin.cursor().execute(f"CREATE DATABASE `{database}`")
        cleanup.callback(admin.cursor().execute, f"DROP DATABASE IF EXISTS `{database}`")
        cleanup.callback(_drop_mongo_databases, dependencies.mongo_uri, env)
        cleanup.callback(delete_queues, RabbitConfig(url=dependencies.rabbitmq_url), env)
        yield


@contextlib.contextmanager
def isolated_stack(
    env: Mapping[str, str], dependencies: Dependencies, run_dir: Path
) -> Iterator[Stack]:
    """Yield a throwaway system's services, not started, with data and a signing key of their own.

    On the way out the services are stopped, then their data is deleted.
    """
    stack = service_stack(env, run_dir)
    with own_data(env, dependencies):
        try:
            prepare_auth(env, key_bits=2048)  # quicker to make than the default, as good here
            yield stack
        finally:
            stack.stop()


def _drop_mongo_databases(uri: str, env: Mapping[str, str]) -> None:
    with pymongo.MongoClient(uri) as client:
        for name in (env["MONGO_VIDEOS_DB"], env["MONGO_MP3S_DB"]):
            client.drop_database(name)
