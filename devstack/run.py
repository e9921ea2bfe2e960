"""Run the whole system on this machine: ``make run`` (and ``make user``).

Every DESIGN.md §9 variable set in the environment wins over the local defaults
(``devstack.system``), so the same command runs against other servers. What is left at its
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
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from devstack import servers
from devstack.mailsink import MailSink
from devstack.stack import StackError
from devstack.supervisor import Supervisor
from devstack.system import auth_cli, prepare_auth, run_secret, service_stack, system_env

log = logging.getLogger("devstack")

DEMO_EMAIL = "demo@video2mp3.local"
# A shell filter, shown in the walk-through, that prints the token of a login answer.
TOKEN_FILTER = """python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'"""  # noqa: S105  # nosec B105


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


def demo_user(env: Mapping[str, str], run_dir: Path) -> tuple[str, str]:
    """Create (or refresh) the demo user and return its credentials."""
    password = run_secret(run_dir / "demo-password")
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
    env = system_env(run_dir, given=environ)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    local = LocalServers()
    stack = service_stack(env, run_dir)
    supervisor: Supervisor | None = None
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        local.start(environ, env, run_dir)
        prepare_auth(env)
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
    env = system_env(run_dir, given=environ)
    prepare_auth(env)
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
