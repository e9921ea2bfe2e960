"""An isolated video2mp3 stack for benchmarks, started the way ``make run`` starts it.

The four services run as processes through ``devstack.stack.Stack`` (gunicorn for the
HTTP services, ``python -m`` for the workers), set up by ``devstack.system`` as make run's
and the tests' are, with ``make run``'s defaults (2 gunicorn workers of 4 threads,
production argon2 cost), on free ports, against:
the machine's MariaDB (a fresh database) and RabbitMQ (queues with a per-run prefix),
a mongod of our own (a single-node replica set) keeping its data on disk in a temp
folder (as ``make run`` does), and an SMTP sink. Everything is removed again on the way out.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pymongo
import requests

from devstack import servers
from devstack.mailsink import MailSink
from devstack.procs import child_pids
from devstack.stack import Stack, StackError
from devstack.system import Dependencies, auth_cli, free_ports, isolated_stack, system_env
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
    mariadb = servers.mariadb()
    rabbitmq = servers.rabbitmq()
    mariadb.ensure()
    rabbitmq.ensure()
    mongo_server = servers.MongoServer(run_dir / "mongod", log_path=run_dir / "mongod.log")
    mail = MailSink(servers.free_port())
    dependencies = Dependencies(
        # The machine's MariaDB, as make run and make test use it (root, no password, by default).
        mysql_user=os.environ.get("BENCH_MYSQL_USER", "root"),
        mysql_password=os.environ.get("BENCH_MYSQL_PASSWORD", ""),
        mongo_uri=mongo_server.uri,
        smtp_port=mail.port,
    )
    given = {
        # Logins are measured separately; the rest of a benchmark logs in a handful of times.
        "LOGIN_RATE_LIMIT_CLIENT": "100000/minute",
        "LOGIN_RATE_LIMIT_ACCOUNT": "100000/minute",
        "CONVERTER_WORKDIR": str(run_dir),
        **(extra_env or {}),
    }
    env = system_env(run_dir, free_ports(), dependencies, isolate="bench", given=given)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, run_dir, ignore_errors=True)
        cleanup.callback(rabbitmq.stop_if_started)
        cleanup.callback(mariadb.stop_if_started)
        mongo_server.start()
        cleanup.callback(mongo_server.stop)
        mail.start()
        cleanup.callback(mail.stop)
        mongo = cleanup.enter_context(pymongo.MongoClient(env["MONGO_URI"], tz_aware=True))
        stack = cleanup.enter_context(isolated_stack(env, dependencies, run_dir))
        try:
            stack.start(services)
            system = BenchSystem(
                stack=stack,
                env=env,
                run_dir=run_dir,
                mongo=mongo,
                gateway=f"http://127.0.0.1:{env['GATEWAY_PORT']}",
                auth=f"http://127.0.0.1:{env['AUTH_PORT']}",
                mail=mail,
                mongo_server=mongo_server,
            )
            cleanup.callback(system.stop_converters)
            yield system
        except StackError:
            for log in sorted(run_dir.glob("logs*/*.log")):
                print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}")
            raise
