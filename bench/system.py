"""An isolated video2mp3 stack for benchmarks, started the way ``make run`` starts it.

The four services run as processes through ``devstack.stack.Stack`` (gunicorn for the
HTTP services, ``python -m`` for the workers) with ``make run``'s defaults (2 gunicorn
workers of 4 threads, production argon2 cost), on free ports, against:
the machine's MariaDB (a fresh database) and RabbitMQ (queues with a per-run prefix),
a mongod of our own (a single-node replica set) keeping its data on disk in a temp
folder (as ``make run`` does), and an SMTP sink. Everything is removed again on the way out.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import mysql.connector
import pymongo
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from common.config import RabbitConfig
from devstack import servers
from devstack.mailsink import MailSink
from devstack.procs import child_pids
from devstack.run import auth_cli
from devstack.stack import Stack, StackError, delete_queues
from video2mp3.multipart import MultipartUpload

UPLOAD_CHUNK = 1024 * 1024
BENCH_PASSWORD = "bench-password-0123456789"  # noqa: S105 - a throwaway user of a throwaway stack  # nosec B105


@dataclass
class BenchSystem:
    """A running stack and what a benchmark needs to drive it."""

    stack: Stack
    env: dict[str, str]
    run_dir: Path
    mongo: pymongo.MongoClient
    gateway: str
    auth: str
    mail: MailSink
    mongo_server: servers.MongoServer
    extra_converters: list[Stack] = field(default_factory=list)

    def wait_mail(self, count: int, timeout: float = 60) -> float:
        """Wait until ``count`` mails have arrived; return the perf_counter() of the last."""
        self.mail.wait_for(count, timeout=timeout)
        return self.mail.arrivals()[count - 1][0]

    @property
    def gateway_port(self) -> int:
        return int(self.env["GATEWAY_PORT"])

    def create_user(self, email: str, password: str = BENCH_PASSWORD) -> None:
        """Create a user with the auth service's own CLI.

        An admin: a benchmark sends the whole system's load from one account, which the
        per-user quotas (10 jobs in flight, 20 uploads a minute) rightly refuse to others.
        """
        auth_cli(
            self.env, "create-user", email, "--password-stdin", "--admin", stdin=password + "\n"
        )

    def login(self, email: str, password: str = BENCH_PASSWORD) -> dict[str, str]:
        """Log in through the gateway; return the Authorization header."""
        response = requests.post(f"{self.gateway}/login", auth=(email, password), timeout=60)
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['token']}"}

    def new_user(self) -> tuple[str, dict[str, str]]:
        """Create a fresh user and return its email and Authorization header."""
        email = f"bench-{uuid.uuid4().hex[:10]}@bench.test"
        self.create_user(email)
        return email, self.login(email)

    def upload(self, path: Path, headers: dict[str, str]) -> dict[str, Any]:
        """Stream a file to ``POST /upload`` with a Content-Length; return the 202 body."""
        with path.open("rb") as file:
            return self.upload_stream(file, path.stat().st_size, path.name, headers)

    def upload_stream(
        self, file: BinaryIO, size: int, filename: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        """Stream ``size`` bytes of ``file`` as the upload's file field; return the 202 body."""
        body = MultipartUpload(file, filename=filename, size=size, chunk_size=UPLOAD_CHUNK)
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.gateway_port, timeout=600, blocksize=UPLOAD_CHUNK
        )
        try:
            connection.request(
                "POST",
                "/upload",
                body=body,
                headers={
                    **headers,
                    "Content-Type": body.content_type,
                    "Content-Length": str(len(body)),
                },
            )
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        if response.status != 202:
            raise RuntimeError(f"upload answered {response.status}: {payload[:500]!r}")
        return json.loads(payload)

    def wait_done(
        self, job_id: str, headers: dict[str, str], *, interval: float, timeout: float = 600
    ) -> float:
        """Poll ``GET /jobs/<id>`` until done; return the perf_counter time it was seen done."""
        deadline = time.monotonic() + timeout
        with requests.Session() as session:
            while time.monotonic() < deadline:
                job = session.get(f"{self.gateway}/jobs/{job_id}", headers=headers, timeout=30)
                status = job.json()["status"]
                if status == "done":
                    return time.perf_counter()
                if status == "failed":
                    raise RuntimeError(f"job {job_id} failed: {job.json()['error']}")
                time.sleep(interval)
        raise TimeoutError(f"job {job_id} not done after {timeout:.0f} s")

    @property
    def videos_db(self) -> pymongo.database.Database:
        return self.mongo[self.env["MONGO_VIDEOS_DB"]]

    @property
    def mp3s_db(self) -> pymongo.database.Database:
        return self.mongo[self.env["MONGO_MP3S_DB"]]

    def start_converters(self, count: int) -> None:
        """Start ``count`` converter processes at once (each its own health port)."""
        stacks = []
        for _ in range(count):
            env = {**self.env, "CONVERTER_PORT": str(servers.free_port())}
            number = len(self.extra_converters) + len(stacks) + 1
            stacks.append(Stack(env, self.run_dir / f"logs-converter-{number}"))
        self.extra_converters += stacks
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(lambda stack: stack.start(("converter",)), stacks))

    def stop_converters(self) -> None:
        """Stop the converters ``start_converters`` started."""
        for extra in self.extra_converters:
            extra.stop()
        self.extra_converters.clear()

    def gateway_workers(self) -> list[int]:
        """Return the pids of the gateway's gunicorn workers."""
        return child_pids(self.stack.processes["gateway"].pid)


@contextlib.contextmanager
def bench_system(
    services: tuple[str, ...] = ("auth", "gateway", "converter", "notification"),
    extra_env: dict[str, str] | None = None,
) -> Iterator[BenchSystem]:
    """Start an isolated stack with the named services; stop and remove it all afterwards."""
    run_dir = Path(tempfile.mkdtemp(prefix="v2m-bench-"))
    suffix = uuid.uuid4().hex[:10]
    database = f"v2m_bench_{suffix}"
    ports = {
        name: servers.free_port()
        for name in ("AUTH_PORT", "GATEWAY_PORT", "CONVERTER_PORT", "NOTIFICATION_PORT")
    }
    mariadb = servers.mariadb()
    rabbitmq = servers.rabbitmq()
    mariadb.ensure()
    rabbitmq.ensure()
    mongo_server = servers.MongoServer(run_dir / "mongod", log_path=run_dir / "mongod.log")
    mail = MailSink(servers.free_port())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = run_dir / "jwt.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    rabbit_url = "amqp://guest:guest@127.0.0.1:5672/%2F"
    # The machine's MariaDB, as make run and make test use it (root, no password, by default).
    mysql_user = os.environ.get("BENCH_MYSQL_USER", "root")
    mysql_password = os.environ.get("BENCH_MYSQL_PASSWORD", "")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(run_dir),
        "APP_ENV": "development",
        "LOG_FORMAT": "text",
        "MYSQL_HOST": mariadb.host,
        "MYSQL_PORT": str(mariadb.port),
        "MYSQL_USER": mysql_user,
        "MYSQL_PASSWORD": mysql_password,
        "MYSQL_DB": database,
        "JWT_PRIVATE_KEY_FILE": str(key_path),
        # Logins are measured separately; the rest of a benchmark logs in a handful of times.
        "LOGIN_RATE_LIMIT_CLIENT": "100000/minute",
        "LOGIN_RATE_LIMIT_ACCOUNT": "100000/minute",
        "MONGO_URI": mongo_server.uri,
        "MONGO_VIDEOS_DB": "videos",
        "MONGO_MP3S_DB": "mp3s",
        "RABBITMQ_URL": rabbit_url,
        "VIDEO_QUEUE": f"bench-{suffix}.video",
        "MP3_QUEUE": f"bench-{suffix}.mp3",
        "WEBHOOK_QUEUE": f"bench-{suffix}.webhook",
        "AUTH_SVC_ADDRESS": f"127.0.0.1:{ports['AUTH_PORT']}",
        "PUBLIC_URL": f"http://127.0.0.1:{ports['GATEWAY_PORT']}",
        "MAX_CONTENT_LENGTH": "2GiB",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(mail.port),
        "SMTP_SECURITY": "none",
        "MAIL_FROM": "video2mp3@localhost",
        "BIND_HOST": "127.0.0.1",
        "HEALTH_HOST": "127.0.0.1",
        "WEBHOOK_SECRET": secrets.token_urlsafe(24),
        "CONVERTER_WORKDIR": str(run_dir),
        **{name: str(port) for name, port in ports.items()},
        **(extra_env or {}),
    }
    overrides = {
        "auth": {"TRUSTED_PROXIES": "1", "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics-auth")},
        "gateway": {"PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics-gateway")},
    }
    stack = Stack(env, run_dir / "logs", overrides=overrides)
    admin = mysql.connector.connect(
        host=mariadb.host, port=mariadb.port, user=mysql_user, password=mysql_password
    )
    mongo: pymongo.MongoClient | None = None
    system: BenchSystem | None = None
    try:
        admin.cursor().execute(f"CREATE DATABASE `{database}`")
        mongo_server.start()
        mail.start()
        mongo = pymongo.MongoClient(env["MONGO_URI"], tz_aware=True)
        auth_cli(env, "init-db")
        stack.start(services)
        system = BenchSystem(
            stack=stack,
            env=env,
            run_dir=run_dir,
            mongo=mongo,
            gateway=f"http://127.0.0.1:{ports['GATEWAY_PORT']}",
            auth=f"http://127.0.0.1:{ports['AUTH_PORT']}",
            mail=mail,
            mongo_server=mongo_server,
        )
        yield system
    except StackError:
        for log in sorted(run_dir.glob("logs*/*.log")):
            print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        if system is not None:
            for extra in system.extra_converters:
                extra.stop()
        stack.stop()
        with contextlib.suppress(Exception):
            mail.stop()
        if mongo is not None:
            mongo.close()
        mongo_server.stop()
        with contextlib.suppress(Exception):
            delete_queues(RabbitConfig(url=rabbit_url), env)
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()
        mariadb.stop_if_started()
        rabbitmq.stop_if_started()
        shutil.rmtree(run_dir, ignore_errors=True)
