"""Run the whole system on this machine: ``make run`` (and ``make user``).

Every DESIGN.md §9 variable set in the environment wins over the defaults
below, so the same command runs against other servers. What is left at its
default is provided here: MariaDB and RabbitMQ are started if they are down, a
mongod (a single-node replica set) keeps its data under the run folder, an SMTP sink
writes each mail there as a ``.eml`` file, and a token-signing key is generated once.
Once the four services are up, a service that dies is restarted with back-off
(``devstack.supervisor``) until Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from devstack import servers
from devstack.mailsink import MailSink
from devstack.stack import Stack, StackError
from devstack.supervisor import Supervisor

log = logging.getLogger("devstack")

DEMO_EMAIL = "demo@video2mp3.local"
# A shell filter, shown in the walk-through, that prints the token of a login answer.
TOKEN_FILTER = """python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'"""  # noqa: S105  # nosec B105


def resolve_env(environ: Mapping[str, str], run_dir: Path) -> dict[str, str]:
    """Return the services' environment: ``environ`` over the local defaults."""
    ports = {
        "GATEWAY_PORT": environ.get("GATEWAY_PORT", "8000"),
        "AUTH_PORT": environ.get("AUTH_PORT", "5000"),
        "CONVERTER_PORT": environ.get("CONVERTER_PORT", "9101"),
        "NOTIFICATION_PORT": environ.get("NOTIFICATION_PORT", "9102"),
    }
    defaults = {
        **ports,
        "MYSQL_HOST": "127.0.0.1",
        "MYSQL_PORT": "3306",
        "MYSQL_USER": "root",
        "MYSQL_DB": "auth",
        # No replicaSet= here: the driver discovers ours, and a server already on the
        # port (reused below) may be a standalone one.
        "MONGO_URI": "mongodb://127.0.0.1:27017/",
        "RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
        "VIDEO_QUEUE": "video",
        "MP3_QUEUE": "mp3",
        "WEBHOOK_QUEUE": "webhook",
        "AUTH_SVC_ADDRESS": f"127.0.0.1:{ports['AUTH_PORT']}",
        "MAX_CONTENT_LENGTH": "2GiB",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": "1025",
        "SMTP_SECURITY": "none",
        "MAIL_FROM": "video2mp3@localhost",
        "PUBLIC_URL": f"http://127.0.0.1:{ports['GATEWAY_PORT']}",
        "LOG_FORMAT": "text",
        # A development machine: listen on loopback only unless told otherwise.
        "BIND_HOST": "127.0.0.1",
        "HEALTH_HOST": "127.0.0.1",
    }
    env = {**defaults, **environ}
    if "WEBHOOK_SECRET" not in environ:
        env["WEBHOOK_SECRET"] = _run_secret(run_dir / "webhook-secret")
    # Callback receivers in development usually listen on this machine, on any port.
    if "EGRESS_ALLOW_PRIVATE" not in environ and "WEBHOOK_ALLOW_PRIVATE" not in environ:
        env["EGRESS_ALLOW_PRIVATE"] = "true"
    env.setdefault("EGRESS_PORTS", "any")
    if "JWT_PRIVATE_KEY" not in environ and "JWT_PRIVATE_KEY_FILE" not in environ:
        env["JWT_PRIVATE_KEY_FILE"] = str(run_dir / "jwt-private.pem")
    return env


def _run_secret(path: Path) -> str:
    """Return the secret kept in ``path``, making it on first use (readable by its owner)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def auth_cli(env: Mapping[str, str], *args: str, stdin: str | None = None) -> str:
    """Run one of the auth service's operator commands and return its output.

    Raises:
        SystemExit: the command failed; its message is shown.
    """
    result = subprocess.run(
        [sys.executable, "-m", "auth_service", *args],
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"auth_service {args[0]} failed:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


class LocalServers:
    """The servers this run started itself, to stop again on the way out."""

    def __init__(self) -> None:
        self.system: list[servers.SystemServer] = []
        self.mongo: servers.MongoServer | None = None
        self.mail: MailSink | None = None

    def start(self, environ: Mapping[str, str], env: Mapping[str, str], run_dir: Path) -> None:
        """Start what the environment leaves to us and is not running yet."""
        if "MYSQL_HOST" not in environ:
            self._ensure(servers.mariadb(env["MYSQL_HOST"], int(env["MYSQL_PORT"])))
        if "RABBITMQ_URL" not in environ and "RABBITMQ_HOST" not in environ:
            broker = urlsplit(env["RABBITMQ_URL"])
            self._ensure(servers.rabbitmq(broker.hostname or "127.0.0.1", broker.port or 5672))
        if "MONGO_URI" not in environ:
            if servers.port_open("127.0.0.1", 27017):
                log.info("reusing the MongoDB server already on 127.0.0.1:27017")
            else:
                self.mongo = servers.MongoServer(
                    run_dir / "mongod", 27017, log_path=run_dir / "logs" / "mongod.log"
                )
                try:
                    self.mongo.start()
                except servers.ServerUnavailable as exc:
                    raise SystemExit(str(exc)) from None
                log.info("mongod on 127.0.0.1:27017, data in %s", run_dir / "mongod")
        if "SMTP_HOST" not in environ:
            port = int(env["SMTP_PORT"])
            if servers.port_open("127.0.0.1", port):
                raise SystemExit(f"port {port} is taken; set SMTP_HOST/SMTP_PORT to a mail server")
            self.mail = MailSink(port, folder=run_dir / "mail")
            self.mail.start()

    def _ensure(self, server: servers.SystemServer) -> None:
        try:
            server.ensure()
        except servers.ServerUnavailable as exc:
            raise SystemExit(str(exc)) from None
        self.system.append(server)

    def stop(self) -> None:
        """Stop what this run started."""
        if self.mail:
            self.mail.stop()
        if self.mongo:
            self.mongo.stop()
        for server in self.system:
            server.stop_if_started()


def prepare_auth(env: Mapping[str, str], run_dir: Path) -> None:
    """Generate the signing key if there is none yet, and create the users schema."""
    key_file = env.get("JWT_PRIVATE_KEY_FILE")
    if key_file and not Path(key_file).exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        auth_cli(env, "gen-key", key_file)
    auth_cli(env, "init-db")


def demo_user(env: Mapping[str, str], run_dir: Path) -> tuple[str, str]:
    """Create (or refresh) the demo user and return its credentials."""
    password = _run_secret(run_dir / "demo-password")
    auth_cli(env, "create-user", DEMO_EMAIL, "--password-stdin", stdin=password + "\n")
    return DEMO_EMAIL, password


def walkthrough(env: Mapping[str, str], email: str, password: str, run_dir: Path) -> str:
    """Return the text that tells a newcomer how to use the running system."""
    gateway = f"http://localhost:{env['GATEWAY_PORT']}"
    auth = f"http://localhost:{env['AUTH_PORT']}"
    return f"""
video2mp3 is running.
  gateway       {gateway}   (health {gateway}/health)
  auth          {auth}
  converter     health on 127.0.0.1:{env["CONVERTER_PORT"]}/ready
  notification  health on 127.0.0.1:{env["NOTIFICATION_PORT"]}/ready
  mail          {run_dir / "mail"}/*.eml    logs  {run_dir / "logs"}/*.log

Demo user: {email}  password: {password}

Try it:
  curl -X POST {auth}/login -u '{email}:{password}'
  JWT=...   # the "token" of that answer, or in one go:
  JWT=$(curl -s -X POST {auth}/login -u '{email}:{password}' | {TOKEN_FILTER})
  curl -X POST {gateway}/upload -H "Authorization: Bearer $JWT" -F "file=@video.mp4"
  # wait for the mail in {run_dir / "mail"} (or poll {gateway}/jobs), then with its fid:
  curl "{gateway}/download?fid=$FID" -H "Authorization: Bearer $JWT" -O -J

More users: make user EMAIL=you@example.com PASSWORD=... [ADMIN=1]
A service that dies is restarted (1 s back-off, doubling to 30 s). Ctrl-C stops everything.
"""


def up(run_dir: Path) -> int:
    """Start everything, print the walk-through, restart what dies until Ctrl-C."""
    environ = dict(os.environ)
    env = resolve_env(environ, run_dir)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    local = LocalServers()
    # Each gunicorn keeps its workers' metrics in its own directory (multiprocess mode).
    overrides = {
        "auth": {
            "TRUSTED_PROXIES": environ.get("TRUSTED_PROXIES", "1"),
            "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics" / "auth"),
        },
        "gateway": {"PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics" / "gateway")},
    }
    stack = Stack(env, run_dir / "logs", overrides=overrides)
    supervisor: Supervisor | None = None
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        local.start(environ, env, run_dir)
        prepare_auth(env, run_dir)
        email, password = demo_user(env, run_dir)
        stack.start()
        supervisor = Supervisor(stack)
        print(walkthrough(env, email, password, run_dir), flush=True)  # noqa: T201 - a CLI
        while not stopping:  # a back-off is a deadline checked here, so Ctrl-C never waits
            supervisor.check()
            time.sleep(0.5)
        return 0
    except StackError as exc:
        log.error("%s", exc)
        return 1
    finally:
        log.info("stopping")
        stack.stop()
        local.stop()
        if supervisor is not None:
            supervisor.log_summary()


def user(run_dir: Path, email: str, admin: bool) -> int:
    """Create or update a user in the database ``make run`` uses; password from $PASSWORD."""
    environ = dict(os.environ)
    password = environ.pop("PASSWORD", "")
    if not password:
        raise SystemExit("give the password as PASSWORD=... (make user EMAIL=... PASSWORD=...)")
    env = resolve_env(environ, run_dir)
    prepare_auth(env, run_dir)
    command = ["create-user", email, "--password-stdin", *(["--admin"] if admin else [])]
    print(auth_cli(env, *command, stdin=password + "\n"))  # noqa: T201 - a CLI
    return 0


def main() -> None:
    """Parse the command line and run ``up`` or ``user``."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--run-dir", type=Path, default=servers.REPO_ROOT / ".run")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("up", help="run the whole system (the default)")
    user_parser = commands.add_parser("user", help="create or update a user ($PASSWORD)")
    user_parser.add_argument("email")
    user_parser.add_argument("--admin", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s devstack: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd narrates every SMTP verb
    run_dir = args.run_dir.resolve()
    if args.command == "user":
        sys.exit(user(run_dir, args.email, args.admin))
    sys.exit(up(run_dir))


if __name__ == "__main__":
    main()
